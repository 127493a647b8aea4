"""Study drivers: one trial's lifecycle, the grid, local pools and the Optuna study."""
