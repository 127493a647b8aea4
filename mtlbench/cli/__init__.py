"""The command line (Typer): the only layer that reads options and prints for a person.

The console script is ``mtlbench.cli.app:main``. This package module imports nothing, so
``import mtlbench.cli`` costs nothing and no submodule depends back on it.
"""
