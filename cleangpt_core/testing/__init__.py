"""Contract checks a plugin author runs from their own test suite, one module per kind of component."""
