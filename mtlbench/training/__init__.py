"""Training one model: the epoch loop, evaluation, per-task gradients, checkpoints, data prep."""
