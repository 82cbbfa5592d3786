"""Results: parsers for MLLOG and LoadGen logs, and the Parquet tables built from them."""
