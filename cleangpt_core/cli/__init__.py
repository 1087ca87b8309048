"""The ``cleangpt`` command line."""
