"""benchpipe: reproducible MLPerf-style benchmark submissions."""

__version__ = "0.1.0"
