"""Inference through the official LoadGen: QSL, SUT, settings and the accuracy script."""
