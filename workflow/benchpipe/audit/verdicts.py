"""What an audit reports: items that pass or fail with their reasons, and the checks behind them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from benchpipe.contracts.errors import BenchpipeError

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass
class Item:
    name: str
    status: str = PASS
    checked: int = 0  # what was looked at: files, rows, logs
    reasons: list[str] = field(default_factory=list)
    # What the count is made of, one line each ("compliance checker: training/.../result_0.txt"),
    # so that a reader can see which checks stand behind "30 checked".
    details: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.status = FAIL
        self.reasons.append(reason)

    def check(self, what: str, count: int = 1) -> None:
        """Count ``count`` things looked at, described by ``what``."""
        self.checked += count
        self.details.append(what)


@dataclass
class AuditReport:
    tree: str
    items: list[Item]
    root_sha256: str | None = None  # of the tree as verified: what the verdicts are about
    kind: str = "benchpipe"  # "foreign": an MLCommons folder benchpipe did not make (audit.foreign)
    # A foreign training folder's scores as the audit derived them, one dict per result folder
    # (audit.foreign): the report shows them as numbers, not as the reasons' sentences.
    scores: list[dict[str, Any]] | None = None

    @property
    def passed(self) -> bool:
        return all(item.status != FAIL for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        out = {"tree": self.tree, "kind": self.kind, "root_sha256": self.root_sha256, "passed": self.passed,
               "items": [asdict(item) for item in self.items]}
        if self.scores is not None:
            out["scores"] = self.scores
        return out

    def lines(self, shown: int = 5) -> list[str]:
        out = []
        for item in self.items:
            out.append(f"{item.status.upper():7} {item.name}: {item.checked} checked")
            out += [f"        - {reason}" for reason in item.reasons[:shown]]
            if len(item.reasons) > shown:
                out.append(f"        - and {len(item.reasons) - shown} more (see the report)")
        out.append(f"audit {'PASSED' if self.passed else 'FAILED'}: {self.tree}")
        return out


def guarded(name: str, check: Callable[[Item], None]) -> Item:
    """One item; an error that stops it is its failure, and the next items still run."""
    item = Item(name)
    try:
        check(item)
    except (BenchpipeError, OSError, pa.ArrowException, ValueError, KeyError) as exc:
        item.fail(f"stopped: {type(exc).__name__}: {exc}")
    return item
