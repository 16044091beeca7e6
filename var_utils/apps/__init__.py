"""Applications on top of the package: the command line, the offline demo and the training script."""
