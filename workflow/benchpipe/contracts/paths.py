"""Where benchpipe's own files live: inside the package, so that an installed wheel (in a
container image, on a cluster node, for an auditor) needs no checkout beside it."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SCHEMAS_DIR = PACKAGE_DIR / "jsonschemas"
# MLLOG metadata names source files relative to this folder (benchpipe/train/harness.py),
# the same in a checkout and in site-packages.
SOURCE_ROOT = PACKAGE_DIR.parent
