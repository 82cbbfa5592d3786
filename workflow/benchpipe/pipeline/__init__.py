"""What the Snakemake workflow asks of the package: the config checked before any job, the
options each rule passes to the command line, and the lock that makes a killed run resumable.

The rule files stay thin: they call these functions and the ``benchpipe`` command line.
"""
