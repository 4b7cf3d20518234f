"""Experiment drivers built on the framework (tables, studies); each is a ``python -m`` entry point."""
