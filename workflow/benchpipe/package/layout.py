"""Where a submission tree keeps benchpipe's own files: written by packaging, read by audit and reproduce.

    benchpipe/config.json, benchpipe/checks.json
    benchpipe/tables/<table>/round=.../division=.../target=.../part-0.parquet
    benchpipe/datasets/<dataset>/manifest.json
    benchpipe/compliance/rules/<benchmark>.yaml
    benchpipe/raw/<target>/<benchmark>/<scenario>/{mlperf_log_accuracy.json, calibration.json}
"""

from __future__ import annotations

from pathlib import Path

OWN = Path("benchpipe")
CONFIG_JSON = OWN / "config.json"
CHECKS_JSON = OWN / "checks.json"
TABLES_DIR = OWN / "tables"
DATASETS_DIR = OWN / "datasets"
RULES_DIR = OWN / "compliance" / "rules"
RAW_DIR = OWN / "raw"
# MLPerf's layouts, and the same layouts for benchpipe's own benchmarks and models.
TRAINING_SECTIONS = ("training", "benchpipe/training")
INFERENCE_SECTIONS = ("inference", "benchpipe/inference")
