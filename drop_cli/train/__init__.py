"""Training: the loop, its objective, checkpoints and run folders."""
