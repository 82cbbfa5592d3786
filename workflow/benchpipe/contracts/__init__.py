"""The bottom layer: what every other layer agrees on.

Errors, the two trees' layouts, schemas, the round registry, what a benchmark is and the
registry of plug-ins, hashing, atomic writes and small-file readers. Nothing here imports
TensorFlow or LoadGen, runs a tool, or writes anything but through ``atomic``.
"""
