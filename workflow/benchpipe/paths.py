"""Where the project's own files live, wherever benchpipe is invoked from."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
SCHEMAS_DIR = REPO_ROOT / "schemas"
