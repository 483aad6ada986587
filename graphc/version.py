"""The package version, in a module of its own so the cache can read it without importing graphc."""

__version__ = "0.1.0"
