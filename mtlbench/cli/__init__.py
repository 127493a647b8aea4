"""The command line (Typer): the only layer that reads options and prints for a person.

``main`` stays importable as ``mtlbench.cli:main`` (the console script) and imports the Typer app
only when called, so ``import mtlbench.cli`` costs nothing.
"""


def main() -> None:
    """Run the ``mtlbench`` command."""
    from mtlbench.cli.app import main as run_app

    run_app()
