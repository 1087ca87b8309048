"""``python -m cleangpt_core`` runs the ``cleangpt`` command line."""

from cleangpt_core.cli.main import main

main()
