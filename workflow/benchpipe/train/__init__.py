"""Training: the harness (loop, evaluation, stopping), MLLOG logging and olympic scoring."""
