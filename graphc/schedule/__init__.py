"""The schedule of a tensor program and its loop plan, which every backend renders."""
