"""The tree's ``mobile/`` section, checked from the tree alone (the audit's ``mobile`` item).

Each extended result JSON is validated against the app's schema as the tree holds it
(``benchpipe/mobile_app/``) and compared with a result derived again from its runs' LoadGen logs
(``benchpipe.mobile.result.derive_run``: throughput, latencies, query and sample counts, validity,
accuracy); int8's accuracy checks are derived again against fp32's runs; every configured task
has both runs; every performance run is VALID; every run served the .tflite its precision's
conversion record names. The packager ran the same checks (``benchpipe.package.mobile``) before it
wrote the tree.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchpipe.audit.verdicts import Item
from benchpipe.contracts.errors import BenchpipeError
from benchpipe.contracts.layout import CONFIG_JSON
from benchpipe.mobile.result import ACCURACY_CHECK, RESULT_JSON


def check_mobile(tree: Path, item: Item) -> None:
    from benchpipe.package.mobile import APP_DIR, check_models, check_results, tree_results

    settings = json.loads((tree / CONFIG_JSON).read_text())
    if not settings.get("mobile", {}).get("targets"):
        item.check("config.json names no Mobile target: no mobile/ section to check", 0)
        return
    failures: list[str] = []
    try:
        results = tree_results(settings, tree)
        check_models(results)
        accuracy = check_results(settings, results, tree / APP_DIR, failures)
    except BenchpipeError as exc:
        item.fail(str(exc))
        return
    for failure in failures:
        item.fail(failure)
    for result in results:
        rel = (result.result_dir / RESULT_JSON).relative_to(tree)
        item.check(f"{rel}: against the app's schema, and derived again from {len(result.runs)} runs' logs")
    stated = _stated_checks(results)
    derived = {(c["target"], c["benchmark"], c["task_id"]): c for c in accuracy}
    for key, check in derived.items():
        item.check(f"int8 accuracy check {'/'.join(key)}: {check['ratio']:.4f} of fp32, at least {check['required']}")
        if stated.get(key) != {k: v for k, v in check.items() if k not in ("target", "benchmark")}:
            item.fail(f"mobile/{key[0]}/{key[1]}/int8/{ACCURACY_CHECK}: {key[2]} differs from the check derived "
                      f"again from the runs ({check})")
    if set(stated) != set(derived):
        item.fail(f"mobile/*/*/int8/{ACCURACY_CHECK}: checks for {sorted(set(stated) ^ set(derived))} "
                  "are in one of the tree and the runs only")


def _stated_checks(results) -> dict[tuple[str, str, str], dict]:
    found = {}
    for result in results:
        path = result.result_dir / ACCURACY_CHECK
        if path.is_file():
            for check in json.loads(path.read_text()):
                found[(result.target, result.benchmark, check["task_id"])] = check
    return found
