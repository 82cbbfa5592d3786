"""Dataset sources: fetch (download, cache, verify) and prepare (deterministic shards)."""
