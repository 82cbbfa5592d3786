"""The files MLPerf's layouts require, present in the tree: a renamed or deleted log is found
even when the manifest was rebuilt after it, and without the official inference checker.

Inference, per organization folder of either section: ``systems/<system>.json`` for each
target, a non-empty ``src/``, and per scenario folder ``contracts.layout.required_scenario_files``
of the scenarios and modes the tree's config gives each benchmark (``contracts.config``'s
``benchmark_scenarios``, by the system_type of the tree's system description, and
``inference_modes``, as packaging and the workflow use: the compliance tests in the closed
division). Training, per benchmark benchpipe trains and target: ``systems/<system>.json`` and
exactly ``result_0.txt ... result_<N-1>.txt``, N being what the package checker demands of an
MLPerf benchmark, and the tree's runs for benchpipe's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchpipe.audit.verdicts import Item
from benchpipe.contracts import layout
from benchpipe.contracts.config import (
    benchmark_scenarios,
    inference_benchmarks,
    inference_modes,
    training_benchmarks,
    training_runs,
)
from benchpipe.contracts.errors import ConfigError


def check_required_files(tree: Path, item: Item, settings: dict[str, Any]) -> None:
    """Fail ``item`` for every file the layouts require that ``tree`` lacks, naming file and rule."""
    _inference(tree, item, settings)
    _training(tree, item, settings)


def required_training_runs(benchmark: str, settings: dict[str, Any]) -> tuple[int, str]:
    """(result files a training result folder must hold, the rule that says so)."""
    from benchpipe.mlcommons import training

    ruleset = settings["training"]["ruleset"]
    if training.is_official(benchmark, ruleset):
        return training.required_runs(benchmark, ruleset), f"MLPerf training {ruleset}'s count for {benchmark}"
    return training_runs(settings, benchmark), f"training.runs of the tree's config for {benchmark}"


def _inference(tree: Path, item: Item, settings: dict[str, Any]) -> None:
    from benchpipe.package.inference import section_of

    submission, round_ = settings["submission"], settings["inference"]["round"]
    for benchmark in inference_benchmarks(settings):
        modes = inference_modes(settings, benchmark)
        section, folder = section_of(tree, benchmark)
        org_dir = section / submission["division"] / submission["submitter"]
        _org_files(tree, item, org_dir, settings["targets"], round_, inference=True)
        expected = {org_dir / "results" / t / folder / s for t in settings["targets"]
                    for s in _scenarios(settings, benchmark, org_dir, t)}
        # Scenario folders the config does not name are held to the same layout.
        found = {p for p in org_dir.glob(f"results/*/{folder}/*") if p.is_dir()}
        for scenario_dir in sorted(expected | found):
            rel = scenario_dir.relative_to(tree)
            item.check(f"{rel}/: the files the {round_} layout requires for {', '.join(modes)}")
            for path, mode in layout.missing_scenario_files(scenario_dir, modes):
                item.fail(layout.missing_reason(f"{rel}/{path}", scenario_dir.name, mode, round_))


def _scenarios(settings: dict[str, Any], benchmark: str, org_dir: Path, target: str) -> list[str]:
    """The scenarios the config runs for ``benchmark`` on ``target``. An LLM's depend on the
    system_type of the tree's description of the target; none are expected when that cannot be
    read (its absence is reported apart), and the folders found are held to the layout anyway."""
    try:
        system_type = json.loads((org_dir / layout.SYSTEMS_DIR / f"{target}.json").read_text())["system_type"]
    except (OSError, ValueError, KeyError, TypeError):
        system_type = None
    try:
        return benchmark_scenarios(settings, benchmark, system_type)
    except ConfigError:
        return []


def _org_files(tree: Path, item: Item, org_dir: Path, targets: list[str], rule: str, *, inference: bool) -> None:
    rel = org_dir.relative_to(tree)
    for target in targets:
        system = org_dir / layout.SYSTEMS_DIR / f"{target}.json"
        if not system.is_file():
            item.fail(f"{system.relative_to(tree)}: missing (required by the {rule} layout for system {target})")
    if inference:
        src = org_dir / layout.SRC_DIR
        if not src.is_dir() or not any(p.is_file() for p in src.rglob("*")):
            item.fail(f"{rel}/{layout.SRC_DIR}/: missing or empty (required by the {rule} layout: "
                      "the code that produced the results)")


def _training(tree: Path, item: Item, settings: dict[str, Any]) -> None:
    from benchpipe.package.tree import training_org_dir

    org, ruleset = settings["submission"]["submitter"], settings["training"]["ruleset"]
    rule = f"training {ruleset}"
    org_dirs = set()
    for benchmark in training_benchmarks(settings):
        org_dir = training_org_dir(tree, org, benchmark, ruleset)
        org_dirs.add(org_dir)
        runs, why = required_training_runs(benchmark, settings)
        wanted = layout.training_result_names(runs)
        for target in settings["targets"]:
            results = org_dir / "results" / target / benchmark
            rel = results.relative_to(tree)
            item.check(f"{rel}/: {runs} result files ({why})")
            present = {p.name for p in results.glob(layout.TRAINING_RESULT_GLOB) if p.is_file()}
            for name in wanted:
                if name not in present:
                    item.fail(f"{rel}/{name}: missing (required: {runs} result files, {why})")
            for name in sorted(present - set(wanted)):
                item.fail(f"{rel}/{name}: one result file too many (required: exactly {runs}, {why})")
    for org_dir in sorted(org_dirs):
        _org_files(tree, item, org_dir, settings["targets"], rule, inference=False)


def check_division_files(division_dir: Path, item: Item, division: str, round_: str) -> None:
    """The same layout, for an inference division folder benchpipe did not make (audit.foreign).

    It has no config: the systems are those its results/ name, the scenarios those on disk, and
    the modes those the division requires (the compliance tests in the closed division).
    Paths in the reasons are relative to ``division_dir``.
    """
    modes = inference_modes({"submission": {"division": division}})
    org_dirs = sorted(p for p in division_dir.iterdir() if (p / "results").is_dir())
    for org_dir in org_dirs:
        systems = sorted(p.name for p in (org_dir / "results").iterdir() if p.is_dir())
        _org_files(division_dir, item, org_dir, systems, round_, inference=True)
        for scenario_dir in sorted(p for p in org_dir.glob("results/*/*/*") if p.is_dir()):
            rel = scenario_dir.relative_to(division_dir)
            item.check(f"{rel}/: the files the {round_} layout requires for {', '.join(modes)}")
            for path, mode in layout.missing_scenario_files(scenario_dir, modes):
                item.fail(layout.missing_reason(f"{rel}/{path}", scenario_dir.name, mode, round_))
