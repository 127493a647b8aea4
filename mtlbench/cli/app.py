"""The ``mtlbench`` command line. Thin: options -> config -> one library call.

Importing this module must stay cheap (no torch, torchvision or mlflow), so ``mtlbench
--help`` answers at once; every command imports what it needs when it runs. Each command lives
in its own module; importing them here registers them on the app, in the order ``--help`` shows.
"""

from __future__ import annotations

import os

# Each command module registers its commands on ``app`` when imported, in the order ``--help``
# shows them.
# isort: off
import mtlbench.cli.run
import mtlbench.cli.catalog
import mtlbench.cli.results
import mtlbench.cli.predict
import mtlbench.cli.bench
import mtlbench.cli.worker
import mtlbench.cli.toy
import mtlbench.cli.data  # noqa: F401

# isort: on
from mtlbench.cli.common import app
from mtlbench.cli.run import build_config

__all__ = ["app", "build_config", "main"]


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    app()


if __name__ == "__main__":
    main()
