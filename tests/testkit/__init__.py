"""Helpers shared by tests (on sys.path via pytest `pythonpath`)."""
