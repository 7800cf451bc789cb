"""The custom training loop: strategy, learning-rate schedule, checkpoints, progress."""
