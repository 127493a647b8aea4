"""mtlbench: a fair benchmark harness for multi-task loss-weighting strategies.

Importing the package is cheap on purpose: torch, torchvision and mlflow are imported only
by the modules that need them, so ``mtlbench --help`` answers quickly.
"""

__version__ = "0.1.0"
