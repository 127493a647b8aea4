"""Optuna studies: context, search space, storage, workers, local worker pool, views."""
