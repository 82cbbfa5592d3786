"""Benchmark plug-ins: one module (or package) each, loaded by name through
``benchpipe.contracts.registry``; ``hyperparameters`` applies a config's settings to them."""
