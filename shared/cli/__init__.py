"""The admin command line: ``python -m shared.cli --help``."""
