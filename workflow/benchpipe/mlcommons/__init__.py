"""The one gateway to MLCommons' tools.

Everything that imports ``mlperf_logging`` (the MLLOG writer in ``train.mllog`` excepted),
runs one of its checkers, reads one of its rules files or RCPs, or runs the inference
submission checker lives here. Each entry point takes the round it checks against, and
reads the tool's verdict lines, not its exit status: MLCommons' checkers often exit 0 on
errors.
"""
