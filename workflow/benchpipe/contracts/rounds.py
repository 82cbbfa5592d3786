"""The MLPerf rounds benchpipe supports, as data."""

from __future__ import annotations

# The inference round whose rules the LoadGen tests follow.
ROUND = "v6.1"
# The training ruleset the packaged trees are checked against.
TRAINING_RULESET = "4.0.0"
COMPLIANCE_TESTS = ("TEST01", "TEST04")
# The inference rules' minimum duration of an official performance run.
OFFICIAL_MIN_DURATION_MS = 600_000
