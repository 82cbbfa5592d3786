"""Packaging: checks, the training and inference tree layouts, and the manifest."""
