"""The targets: the table, the kernel contract, and one subpackage per code generator."""
