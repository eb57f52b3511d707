"""Helpers shared by tests (on sys.path via pytest `pythonpath = ["tests/support"]`, a folder
that holds nothing named like the packages under test)."""
