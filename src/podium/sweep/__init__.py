"""Hyperparameter sweeps: podium's Optuna sweeper for Hydra, its study, search space and
pruning."""
