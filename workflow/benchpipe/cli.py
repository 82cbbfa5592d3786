"""The benchpipe command line: one sub-command per stage.

Snakemake rules call these, so the same command runs locally, in a container, on a
cluster node, or for an auditor. Every error ends as one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from benchpipe.contracts import rounds
from benchpipe.contracts.benchmark import LLMInferenceTask
from benchpipe.contracts.errors import BenchpipeError, ConfigError

log = logging.getLogger("benchpipe")
LLM_STAND_IN_BENCHMARKS = ("llama31_8b", "llama31_8b_edge")


def _cmd_datasets_prepare(args: argparse.Namespace) -> None:
    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import prepare
    from benchpipe.datasets.source import override_sources

    benchmark = registry.get(args.benchmark)
    if args.sources_json:
        try:
            overrides = json.loads(args.sources_json)
        except json.JSONDecodeError as exc:
            raise BenchpipeError(f"--sources-json: not valid JSON: {exc}") from exc
        benchmark = dataclasses.replace(
            benchmark, sources=override_sources(benchmark.name, benchmark.sources, overrides)
        )
    manifest = prepare(benchmark, args.out, cache_dir=args.cache_dir, offline=args.offline)
    rows = {s: sum(e["rows"] for e in manifest["shards"] if e["split"] == s) for s in ("train", "eval")}
    log.info("prepared %s: %d train, %d eval samples in %s", args.benchmark, rows["train"], rows["eval"], args.out)


def _cmd_datasets_imagenet(args: argparse.Namespace) -> None:
    from benchpipe.datasets.imagenet import Subset, check_layout
    from benchpipe.datasets.tfrecord import convert

    for option in ("train_per_class", "val_images", "synsets", "workers"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise BenchpipeError(f"--{option.replace('_', '-')}: must be at least 1, got {value}")
    subset = None
    if args.train_per_class is not None or args.val_images is not None:
        subset = Subset(args.train_per_class, args.val_images)
    files = check_layout(args.train_dir, args.val_dir, args.val_map, bounding_boxes=args.bounding_boxes,
                         subset=subset, num_synsets=args.synsets)
    log.info("imagenet: train %s, val %s, labels %s", args.train_dir.resolve(), args.val_dir.resolve(),
             args.val_map.resolve())
    if args.workers == 1:
        from benchpipe.datasets.tfrecord import init_worker

        init_worker()  # one thread, like each worker of a pool: 1 vs N workers compares like with like
    manifest = convert(files, args.out, workers=args.workers)
    log.info("imagenet%s: %d train, %d val images in %d shards, %s", " subset" if subset else "",
             len(files.train), len(files.val), len(manifest["shards"]), args.out)


def _cmd_datasets_bundle(args: argparse.Namespace) -> None:
    from benchpipe.datasets.bundle import bundle, parse_sources_json
    from benchpipe.datasets.source import benchmark_sources

    overrides = parse_sources_json(args.sources_json) if args.sources_json else {}
    entries = bundle(benchmark_sources(args.benchmarks, overrides, "--sources-json"), args.out, cache_dir=args.cache_dir)
    sizes = {e.sha256: e.size for e in entries}
    print(f"{args.out}: {len(entries)} sources of {' '.join(args.benchmarks)} in {len(sizes)} files, "
          f"{sum(sizes.values())} bytes")


def _cmd_datasets_stand_in(args: argparse.Namespace) -> None:
    from benchpipe.benchmarks.llama.corpus import write_corpus
    from benchpipe.contracts.hashing import sha256_file

    written = write_corpus(args.out, train_rows=args.train_rows, eval_rows=args.eval_rows, length=args.length,
                           seed=args.seed)
    # What to paste into a config: the sources of llama2_70b_lora, pointing at these files.
    print("datasets:\n  sources:\n    llama2_70b_lora:")
    for name, path in written.items():
        print(f"      {name}: {{urls: [\"file://{path.resolve()}\"], sha256: {sha256_file(path)}}}")


def _cmd_datasets_stand_in_cnndm(args: argparse.Namespace) -> None:
    from benchpipe.benchmarks.llama.cnndm_stand_in import StandInShape, write_stand_in
    from benchpipe.contracts.hashing import sha256_file

    shape = StandInShape(records=args.records, topics=args.topics, vocabulary=args.vocabulary)
    written = write_stand_in(args.out, shape=shape, seed=args.seed)
    # What to paste into a config: the sources of the LLM benchmarks, pointing at these files.
    print("datasets:\n  sources:")
    for benchmark in args.benchmark or LLM_STAND_IN_BENCHMARKS:
        print(f"    {benchmark}:")
        for name, path in written.items():
            print(f"      {name}: {{urls: [\"file://{path.resolve()}\"], sha256: {sha256_file(path)}}}")


def _cmd_stand_in_llama(args: argparse.Namespace) -> None:
    from benchpipe.benchmarks.llama.cnndm import EVAL_FILE, TOKENIZER_FILE
    from benchpipe.benchmarks.llama.stand_in_model import write_stand_in_checkpoint
    from benchpipe.infer.models import checkpoint_sha256

    _limit_threads(args.threads)
    write_stand_in_checkpoint(args.data / EVAL_FILE, args.data / TOKENIZER_FILE, args.out, steps=args.steps,
                              seed=args.seed)
    digest = checkpoint_sha256(args.out)
    # What to paste into a config: the checkpoint each LLM benchmark serves.
    print("inference:\n  models:")
    for benchmark in args.benchmark or LLM_STAND_IN_BENCHMARKS:
        print(f"    {benchmark}: {{checkpoint: \"{args.out.resolve()}\", sha256: {digest}}}")


def _cmd_datasets_import(args: argparse.Namespace) -> None:
    from benchpipe.datasets.bundle import import_bundle
    from benchpipe.datasets.fetch import default_cache_dir

    report = import_bundle(args.bundle, cache_dir=args.cache_dir)
    cache = args.cache_dir or default_cache_dir()
    print(f"{args.bundle}: {len(report.added)} added to {cache}, {len(report.present)} already there")


def _json_option(text: str | None, option: str) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: must be a JSON object, not {type(value).__name__}")
    return value


def _cmd_train(args: argparse.Namespace) -> None:
    from benchpipe.benchmarks.hyperparameters import resolve_hyperparameters
    from benchpipe.contracts.config import TrainingDevices, load_target
    from benchpipe.train.harness import Submission, train_run

    overrides = _json_option(args.hyperparameters_json, "--hyperparameters-json")
    # The same checks as before the workflow's first job: a run by hand is held to the rules too.
    benchmark = resolve_hyperparameters(args.benchmark, {args.benchmark: overrides}, args.division,
                                        args.training_ruleset)
    target = load_target(args.target_file) if args.target_file else None
    devices = target.training if target else TrainingDevices()
    out = args.out
    if devices.distribution == "multi_worker":
        from benchpipe.train.devices import slurm_worker, task_output

        worker = slurm_worker(target.gpus)  # before TensorFlow sees a GPU
        log.info("task %d of %d: %s", worker.rank, worker.workers, "writes the run" if worker.chief else "trains")
        out = task_output(args.out, worker)
    outcome = train_run(
        benchmark,
        args.data,
        out,
        seed=args.seed,
        submission=Submission(args.org, args.platform, args.division, args.status),
        threads=args.threads,
        max_epochs=args.max_epochs,
        devices=devices,
    )
    counted, quality = ("steps", "best eval loss") if benchmark.lower_is_better else ("epochs", "best top-1")
    log.info(
        "run %s: %s after %d %s, %s %.4f, %.1f s",
        args.out, outcome.status, outcome.epochs, counted, quality, outcome.best_accuracy, outcome.time_to_train_s,
    )


def _served_model(args: argparse.Namespace):
    from benchpipe.infer.models import supplied_model, trained_model

    if args.model is not None:
        if not args.model_sha256:
            raise ConfigError("--model needs --model-sha256 (inference.models.<benchmark>.sha256)")
        return supplied_model(args.model, args.model_sha256, args.benchmark)
    if not args.train_runs:
        raise ConfigError("give --train-runs (the model training exported) or --model and --model-sha256")
    return trained_model(args.train_runs)


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from benchpipe.contracts import registry
    from benchpipe.contracts.records import RunKind
    from benchpipe.infer.loadgen_run import calibrate_scenario

    _limit_threads(args.threads)
    kind = RunKind.from_settings({
        "official": args.official, "min_duration_ms": args.min_duration_ms,
        "accuracy_samples": args.accuracy_samples,
    })
    benchmark = registry.get(args.benchmark)
    if isinstance(benchmark.inference, LLMInferenceTask):
        from benchpipe.infer.llm_run import calibrate_llm_scenario
        from benchpipe.infer.models import supplied_checkpoint

        if args.model is None or not args.model_sha256:
            raise ConfigError(f"{args.benchmark} serves a checkpoint: give --model and --model-sha256 "
                              f"(inference.models.{args.benchmark})")
        model = supplied_checkpoint(args.model, args.model_sha256, args.benchmark)
        calibrate_llm_scenario(benchmark, args.data, model, args.scenario, kind, args.out)
    else:
        model = _served_model(args)
        calibrate_scenario(benchmark, args.data, model, args.scenario, kind, args.out)
    log.info("%s calibrated with %s: user.conf in %s", args.scenario, model.path, args.out)


def _cmd_infer(args: argparse.Namespace) -> None:
    from benchpipe.contracts import registry
    from benchpipe.infer.loadgen_run import LoadGenTest, run_test

    benchmark = registry.get(args.benchmark)
    if isinstance(benchmark.inference, LLMInferenceTask):
        from benchpipe.infer.llm_run import run_llm_test

        _limit_threads(args.threads)
        run_llm_test(benchmark, args.data, args.scenario, args.mode, args.calibration, args.out)
        log.info("%s %s: logs in %s", args.scenario, args.mode, args.out)
        return
    test = LoadGenTest(args.scenario, args.mode)
    run_test(benchmark, args.data, test, args.calibration, args.out, conf_path=args.user_conf, threads=args.threads)
    log.info("%s %s: logs in %s", args.scenario, args.mode, args.out)


def _cmd_mobile_app(args: argparse.Namespace) -> None:
    from benchpipe.datasets.fetch import default_cache_dir
    from benchpipe.mobile.app import materialize

    required = []
    for item in args.require:
        task, sep, kind = item.partition(":")
        if not sep or not task or not kind:
            raise ConfigError(f"--require {item!r}: expected TASK:DATASET_TYPE, e.g. image_classification_v2:IMAGENET")
        required.append((task, kind))
    supplied = []
    for item in args.supplied:
        model, task, scored = (item.split(":") + [""])[:3]
        if not model or not task or scored not in ("", "accuracy") or item.count(":") > 2:
            raise ConfigError(f"--supplied {item!r}: expected MODEL:TASK or MODEL:TASK:accuracy")
        supplied.append((model, task, scored == "accuracy"))
    record = materialize(args.out, app=args.app, mirrors=tuple(args.mirror),
                         cache_dir=args.cache_dir or default_cache_dir(), offline=args.offline, required=required,
                         supplied=supplied, supplied_on_host=not args.supplied_on_phones)
    log.info("the Mobile app's files (%s) and %d tasks in %s", record["origin"], len(record["tasks"]), args.out)


def _cmd_mobile_convert(args: argparse.Namespace) -> None:
    from benchpipe.mobile.convert import convert

    served = _served_model(args)
    record = convert(Path(served.path), served.sha256, args.data, args.precision, args.out,
                     representative_samples=args.representative_samples, seed=args.seed)
    log.info("%s LiteRT model of %s: %s (%d bytes, sha256 %s)", args.precision, served.path, args.out,
             record.tflite_bytes, record.tflite_sha256)


def _cmd_mobile_supply(args: argparse.Namespace) -> None:
    from benchpipe.mobile.convert import supply

    record = supply(args.tflite, args.sha256, args.precision, args.out)
    log.info("%s LiteRT model supplied: %s (%d bytes, sha256 %s)", args.precision, args.out, record.tflite_bytes,
             record.tflite_sha256)


def _cmd_mobile_run(args: argparse.Namespace) -> None:
    from benchpipe.contracts import registry
    from benchpipe.mobile.run import RunRequest, run_task

    request = RunRequest.from_args(args)
    record = run_task(registry.get(request.benchmark) if request.benchmark else None, request)
    log.info("%s %s %s (%s): logs in %s", record.task_id, record.run_mode, record.mode, record.precision, request.out)


def _cmd_mobile_result(args: argparse.Namespace) -> None:
    from benchpipe.contracts.atomic import atomic_dir
    from benchpipe.contracts.config import load_target
    from benchpipe.mobile.result import accelerator_description, target_result, write_result

    target = load_target(args.target_file)
    result, checks = target_result(args.app, args.runs, args.reference_runs,
                                   accelerator_desc=accelerator_description(target), official=args.official)
    with atomic_dir(args.out) as tmp:
        write_result(tmp, result, checks)
    log.info("extended result of %d task(s) in %s", len(result["results"]), args.out)


def _cmd_model_sha256(args: argparse.Namespace) -> None:
    from benchpipe.infer.models import CHECKPOINT_CONFIG, SAVED_MODEL_PB, checkpoint_sha256, savedmodel_sha256

    # A classifier's SavedModel or an LLM benchmark's checkpoint folder: one digest of every file.
    if (args.directory / SAVED_MODEL_PB).is_file():
        print(savedmodel_sha256(args.directory))
    elif (args.directory / CHECKPOINT_CONFIG).is_file():
        print(checkpoint_sha256(args.directory))
    else:
        raise ConfigError(f"{args.directory}: neither a SavedModel (no {SAVED_MODEL_PB}) nor a Llama checkpoint "
                          f"folder in Hugging Face's layout (no {CHECKPOINT_CONFIG})")


def _cmd_system(args: argparse.Namespace) -> None:
    from benchpipe.contracts.config import load_target
    from benchpipe.package.system import describe_system, write_description

    target = load_target(args.target_file)
    description = describe_system(target, submitter=args.submitter, division=args.division, status=args.status)
    write_description(description, args.out)
    log.info("system description of %s in %s", target.name, args.out)


def _cmd_parse(args: argparse.Namespace) -> None:
    from benchpipe.results.tables import write_tables

    written = write_tables(args.runs, args.out, args.train_runs, args.tests,
                           training_ruleset=args.training_ruleset, inference_round=args.inference_round,
                           mobile_dirs=args.mobile_runs)
    for name, rows in written.items():
        log.info("%s: %d rows", args.out / name, rows)


def _cmd_package(args: argparse.Namespace) -> None:
    from benchpipe.package.tree import PackageRequest, package

    request = PackageRequest(
        settings=json.loads(args.settings), runs_dir=args.runs, tables_dir=args.tables, out=args.out,
        datasets_dir=args.datasets,
    )
    manifest = package(request)
    log.info("submission tree %s: %d files, manifest verified", args.out, len(manifest["files"]))


def _root_text(verified) -> str:
    if verified.root_sha256 is None:
        return f"no root sha256 ({verified.format})"
    return f"root sha256 {verified.root_sha256}"


def _cmd_verify(args: argparse.Namespace) -> None:
    from benchpipe.package.manifest import verify_tree

    verified = verify_tree(args.tree)
    print(f"{args.tree}: {verified.files} files match manifest.json; {_root_text(verified)}")


def _cmd_audit(args: argparse.Namespace) -> int:
    from benchpipe.audit import audit
    from benchpipe.contracts.atomic import atomic_file
    from benchpipe.report import beside

    out = args.report or beside(args.tree, ".audit.json", "--report")  # refused before the audit's minutes
    report = audit(args.tree, inference_checker=args.inference_checker, ruleset=args.ruleset,
                   round_=args.round, summary=args.summary)
    with atomic_file(out) as f:
        f.write(json.dumps(report.to_dict(), indent=1) + "\n")
    print("\n".join(report.lines()))
    print(f"report: {out}")
    return 0 if report.passed else 1


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from benchpipe.contracts.atomic import atomic_file
    from benchpipe.reproduce import Selection, report, reproduce

    selections = [Selection.parse(text) for text in args.select]
    reproduction = reproduce(args.tree, selections, args.work, data=args.data, target_file=args.target_file,
                             models=args.model, time_tolerance=args.time_tolerance,
                             performance_tolerance=args.performance_tolerance, threads=args.threads, keep=args.keep)
    results = reproduction.results
    out = args.report or args.tree.resolve().parent / f"{args.tree.resolve().name}.reproduce.json"
    with atomic_file(out) as f:
        f.write(json.dumps(report(reproduction), indent=1, sort_keys=True) + "\n")
    print(f"tolerances: time to train ±{args.time_tolerance:.0%}, LoadGen performance metric "
          f"±{args.performance_tolerance:.0%}")
    for result in results:
        print(f"{result.status.upper()}: {result.run}" + ("" if result.where == "host" else f" (in {result.where})"))
        print("\n".join([f"    matched: {c}" for c in result.checks] + [f"    differs: {d}" for d in result.differences]))
    print(f"tree root sha256 {reproduction.root_sha256}; report: {out}; "
          + (f"reruns kept in {reproduction.work}" if reproduction.kept else f"reruns removed ({reproduction.work})"))
    return 0 if all(r.status == "match" for r in results) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from benchpipe.report import beside, write_report

    out = args.out or beside(args.tree, ".report.html", "--out")
    written = write_report(args.tree, out, audit_path=args.audit, inference_checker=args.inference_checker,
                           published=args.published)
    print(f"{written.path}: {len(written.plots)} plots; audit {'PASSED' if written.audit_passed else 'FAILED'} "
          f"({written.audit_source.rstrip('.')})")
    return 0


def _cmd_published_import(args: argparse.Namespace) -> int:
    from benchpipe.datasets.fetch import default_cache_dir
    from benchpipe.published.sources import chosen, fetch
    from benchpipe.published.summary import import_file
    from benchpipe.published.table import write_import

    if not args.files and not args.source:
        raise ConfigError("nothing to import: name summary files, or known sources with --source")
    # Every file is fetched and read before any is written: a bad one leaves the table as it was.
    imported = [(str(path), import_file(path, round_=args.round, skip_bad_rows=args.skip_bad_rows))
                for path in args.files]
    for source in chosen(args.source):
        path = fetch(source, cache_dir=args.cache_dir or default_cache_dir(), mirrors=tuple(args.mirror),
                     offline=args.offline)
        what = f"{source.name} ({source.repository} {source.path} at {source.commit[:12]})"
        imported.append((what, import_file(path, round_=source.round, skip_bad_rows=args.skip_bad_rows,
                                           family=source.family)))
    for what, one in imported:
        part = write_import(args.out, one)
        print(f"{what}: {len(one.rows)} {one.family} rows of round {one.round} into {part}"
              + (f"; {len(one.skipped)} rows left out (see {args.out}/imports)" if one.skipped else ""))
        for skip in one.skipped:
            print(f"  left out, {skip['at']}: {skip['reason']}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from benchpipe.report.compare import compare_tree, format_comparison

    print(format_comparison(compare_tree(args.tree, args.published, args.round, args.training_round)))
    return 0


def _cmd_pack(args: argparse.Namespace) -> None:
    from benchpipe.package.archive import pack

    packed = pack(args.tree, args.out)
    print(f"{args.out}: {packed.verified.files} files of {args.tree}, {_root_text(packed.verified)}; "
          f"archive {packed.size} bytes, sha256 {packed.sha256}")


def _cmd_unpack(args: argparse.Namespace) -> None:
    from benchpipe.package.archive import unpack

    verified = unpack(args.archive, args.out)
    print(f"{args.out}: {verified.files} files unpacked from {args.archive}, match manifest.json; "
          f"{_root_text(verified)}")


def _cmd_run(args: argparse.Namespace) -> int:
    from benchpipe.contracts.config import load_target
    from benchpipe.runtime.launch import launch

    command = _after_dashes(args.job_command)
    if job_id := os.environ.get("SLURM_JOB_ID"):
        # The line an admin's `sacct -j` starts from when a job's log says something went wrong.
        log.info("SLURM job %s on %s (partition %s)", job_id, os.environ.get("SLURMD_NODENAME", "?"),
                 os.environ.get("SLURM_JOB_PARTITION", "?"))
    return launch(load_target(args.target_file), command, args.input, args.output, args.images, args.across_nodes)


def _after_dashes(remainder: list[str]) -> list[str]:
    """A command given after `--` (argparse.REMAINDER keeps the dashes)."""
    return remainder[1:] if remainder[:1] == ["--"] else remainder


def _cmd_slurm_task(args: argparse.Namespace) -> int:
    from benchpipe.runtime.slurm import apptainer_task_env

    command = _after_dashes(args.task_command)
    if not command:
        raise ConfigError("benchpipe slurm-task: no command after --")
    os.environ.update(apptainer_task_env(dict(os.environ)))
    os.execvp(command[0], command)


def _cmd_image_wheelhouse(args: argparse.Namespace) -> None:
    from benchpipe.runtime.images import fill_wheelhouse

    wheels = fill_wheelhouse(args.lock, args.out)
    log.info("%s: %d wheels, each matching a hash of %s", args.out, len(wheels), args.lock)


def _cmd_image_build(args: argparse.Namespace) -> None:
    from benchpipe.runtime.images import build_image

    record = build_image(args.engine, args.recipe.name, args.recipe, args.wheelhouse, args.project, args.base, args.out)
    log.info("%s image %s: %s (%d wheels), record %s", args.engine, record.tag, record.image_id, len(record.wheels), args.out)


def _cmd_image_sif(args: argparse.Namespace) -> None:
    from benchpipe.runtime.images import convert_to_sif

    record = convert_to_sif(args.source_record, args.out)
    log.info("apptainer image %s (%s), record %s", record.sif, record.sif_sha256, args.out)


def _limit_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _version() -> str:
    """The installed distribution's version, as manifests record it; the source's own when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("benchpipe")
    except PackageNotFoundError:
        from benchpipe import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchpipe", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"benchpipe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="fetch, verify and preprocess datasets; bundle them for air-gapped use")
    datasets = p.add_subparsers(dest="datasets_command", required=True)
    cache_help = "content-addressed download cache (default: $XDG_CACHE_HOME/benchpipe or ~/.cache/benchpipe)"
    q = datasets.add_parser("prepare", help="fetch a benchmark's sources into the cache, verify, preprocess")
    q.add_argument("--benchmark", required=True)
    q.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    q.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    q.add_argument("--offline", action="store_true", help="use only the cache; never download")
    q.add_argument("--sources-json", default=None,
                   help="per source name: {urls, sha256?, size?} replacing the declared places (datasets.sources)")
    q.set_defaults(func=_cmd_datasets_prepare)
    # (further `datasets` sub-commands are added below this line)
    q = datasets.add_parser("imagenet", help="check your ImageNet copy, write TFRecord shards and val arrays")
    q.add_argument("--train-dir", type=Path, required=True, help="train/<synset>/*.JPEG")
    q.add_argument("--val-dir", type=Path, required=True, help="the flat val/ directory")
    q.add_argument("--val-map", type=Path, required=True, help="MLPerf's val_map.txt")
    q.add_argument("--bounding-boxes", type=Path, default=None, help="LOC_train_solution.csv (optional)")
    q.add_argument("--train-per-class", type=int, default=None, help="subset: first N train images per synset")
    q.add_argument("--val-images", type=int, default=None, help="subset: first N val images")
    q.add_argument("--synsets", type=int, default=1000, help="expected synset count (small test trees only)")
    q.add_argument("--workers", type=int, default=None, help="worker processes (default: every core)")
    q.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    q.set_defaults(func=_cmd_datasets_imagenet)
    q = datasets.add_parser("bundle", help="pack benchmarks' verified sources into one tar for an air-gapped machine")
    q.add_argument("--benchmarks", nargs="+", required=True)
    q.add_argument("--out", type=Path, required=True, help="bundle to write (a tar)")
    q.add_argument("--cache-dir", type=Path, default=None, help=cache_help + "; missing sources are fetched into it")
    q.add_argument("--sources-json", default=None,
                   help="per benchmark, per source name: {urls, sha256?, size?} (datasets.sources)")
    q.set_defaults(func=_cmd_datasets_bundle)
    q = datasets.add_parser("stand-in-corpus", help="write a generated corpus in the tokenized GovReport form "
                            "of llama2_70b_lora, for development runs of its stand-in model")
    q.add_argument("--out", type=Path, required=True, help="folder for train.parquet and validation.parquet")
    q.add_argument("--train-rows", type=int, default=512)
    q.add_argument("--eval-rows", type=int, default=64)
    q.add_argument("--length", type=int, default=64, help="tokens a row (the sequence_length hyperparameter)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_cmd_datasets_stand_in)
    q = datasets.add_parser("stand-in-cnndm", help="write a generated CNN/DailyMail in the reference's cnn_eval.json "
                            "form of llama3.1-8b, with its tokenizer.json, for development runs of a stand-in model")
    q.add_argument("--out", type=Path, required=True, help="folder for cnn_eval.json and tokenizer.json")
    q.add_argument("--records", type=int, default=64)
    q.add_argument("--topics", type=int, default=8, help="topic sentences (the summaries)")
    q.add_argument("--vocabulary", type=int, default=64, help="token ids, special tokens included")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--benchmark", action="append", choices=LLM_STAND_IN_BENCHMARKS,
                   help="whose sources the printed YAML sets (repeatable; default: both)")
    q.set_defaults(func=_cmd_datasets_stand_in_cnndm)
    q = datasets.add_parser("import", help="verify a bundle and add its files to the cache, all or nothing")
    q.add_argument("bundle", type=Path, help="tar written by `benchpipe datasets bundle`")
    q.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    q.set_defaults(func=_cmd_datasets_import)

    p = sub.add_parser("train", help="one seeded, MLLOG-logged training run")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--org", required=True, help="submitting organization")
    p.add_argument("--platform", required=True, help="system (target) name")
    p.add_argument("--division", choices=["closed", "open"], required=True)
    p.add_argument("--status", choices=["onprem", "cloud", "preview", "research"], required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max-epochs", type=int, default=None, help="override the benchmark's epoch limit")
    p.add_argument("--hyperparameters-json", default=None,
                   help="hyperparameters that differ from the benchmark's reference, as a JSON object "
                        "(training.hyperparameters.<benchmark>); closed runs accept only what the rules allow")
    p.add_argument("--training-ruleset", choices=rounds.TRAINING_RULESETS, default=rounds.TRAINING_RULESET,
                   help="the training round whose rules the run is held to (training.ruleset)")
    p.add_argument("--target-file", type=Path, default=None,
                   help="hardware target (config/targets/<name>.yaml): its training keys choose the "
                        "tf.distribute strategy, precision and thread counts (default: one device, auto)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("calibrate", help="measure a model under one LoadGen scenario and write its user.conf")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--train-runs", type=Path, nargs="*", default=[],
                   help="training run directories; the first successful one's model is served")
    p.add_argument("--model", type=Path, default=None, help="a SavedModel to serve instead (inference.models)")
    p.add_argument("--model-sha256", default=None, help="its `benchpipe model-sha256`, checked before use")
    p.add_argument("--scenario", required=True)
    p.add_argument("--official", action="store_true",
                   help="a run for a round: 600 s, the whole dataset (default: a development run)")
    p.add_argument("--min-duration-ms", type=int, default=5000, help="development runs' LoadGen min_duration")
    p.add_argument("--accuracy-samples", type=int, default=None,
                   help="development runs use the first N samples (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("infer", help="one LoadGen test (scenario x mode) with a calibrated user.conf")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--calibration", type=Path, required=True,
                   help="the scenario's `benchpipe calibrate` output: user.conf, the model, the run kind")
    p.add_argument("--scenario", required=True)
    p.add_argument("--mode", required=True,
                   help="performance, accuracy, or a compliance test: TEST01, TEST04 (a classifier), TEST06 (an LLM)")
    p.add_argument("--user-conf", type=Path, default=None,
                   help="run with this user.conf instead of the calibration's (a compliance test: the one its "
                        "scenario's performance run ended with)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("stand-in-llama", help="train the tiny Llama that summarises the stand-in CNN/DailyMail "
                       "and write it as a Hugging Face checkpoint, for development runs of llama31_8b")
    p.add_argument("--data", type=Path, required=True,
                   help="the folder `benchpipe datasets stand-in-cnndm` wrote (cnn_eval.json, tokenizer.json)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint folder to create")
    p.add_argument("--steps", type=int, default=300, help="training steps (batches of 16 records)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--benchmark", action="append", choices=LLM_STAND_IN_BENCHMARKS,
                   help="whose model the printed YAML sets (repeatable; default: both)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=_cmd_stand_in_llama)

    p = sub.add_parser("mobile", help="the Mobile family: LiteRT models, the Mobile app's tasks and result format")
    mobile = p.add_subparsers(dest="mobile_command", required=True)
    q = mobile.add_parser("app", help="the Mobile app's tasks.pbtxt, proto and result schema in one folder, "
                                      "with its tasks resolved (tasks.json)")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--app", type=Path, default=None,
                   help="your mlcommons/mobile_app_open checkout (default: fetch the files at the pinned commit)")
    q.add_argument("--mirror", action="append", default=[], help="a base URL holding the files at their paths")
    q.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    q.add_argument("--offline", action="store_true", help="use only the cache; never download")
    q.add_argument("--require", action="append", default=[], metavar="TASK:DATASET_TYPE",
                   help="a task the runs need, of that dataset type (checked against tasks.pbtxt)")
    q.add_argument("--supplied", action="append", default=[], metavar="MODEL:TASK[:accuracy]",
                   help="a task a supplied model runs (mobile.supplied); ':accuracy': its accuracy is scored on a host")
    q.add_argument("--supplied-on-phones", action="store_true",
                   help="the supplied models run on phones only (runtime adb), whose app binary runs every task")
    q.set_defaults(func=_cmd_mobile_app)
    q = mobile.add_parser("convert", help="the served SavedModel as a fp32 or full-integer int8 .tflite")
    q.add_argument("--benchmark", required=True)
    q.add_argument("--data", type=Path, required=True, help="the prepared dataset (int8: its training split)")
    q.add_argument("--train-runs", type=Path, nargs="*", default=[], help="the training runs the model comes from")
    q.add_argument("--model", type=Path, default=None, help="a SavedModel instead (with --model-sha256)")
    q.add_argument("--model-sha256", default=None)
    q.add_argument("--precision", required=True, choices=("fp32", "int8"))
    q.add_argument("--representative-samples", type=int, default=100)
    q.add_argument("--seed", type=int, default=0, help="picks the representative training samples")
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_mobile_convert)
    q = mobile.add_parser("supply", help="a .tflite the user supplies (MobileBERT, ...), checked and laid out as "
                          "a conversion")
    q.add_argument("--tflite", type=Path, required=True)
    q.add_argument("--sha256", required=True, help="the model's sha256, as its source states it")
    q.add_argument("--precision", required=True, choices=("fp32", "int8"))
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_mobile_supply)
    q = mobile.add_parser("run", help="one Mobile app task, performance or accuracy, on a LiteRT model")
    from benchpipe.mobile.run import RunRequest

    RunRequest.add_arguments(q)
    q.set_defaults(func=_cmd_mobile_run)
    q = mobile.add_parser("result", help="a target's runs of one model as the app's extended result JSON")
    q.add_argument("--app", type=Path, required=True, help="`benchpipe mobile app`'s folder (the result schema)")
    q.add_argument("--target-file", type=Path, required=True)
    q.add_argument("--runs", type=Path, nargs="+", required=True)
    q.add_argument("--reference-runs", type=Path, nargs="*", default=[],
                   help="int8: the fp32 accuracy runs its accuracy is held to")
    q.add_argument("--official", action="store_true", help="a submission's result (the app's official flag)")
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_mobile_result)

    p = sub.add_parser("model-sha256", help="the digest of a SavedModel or a Llama checkpoint folder "
                       "(inference.models.<b>.sha256)")
    p.add_argument("directory", type=Path, metavar="DIR", help="a SavedModel, or a checkpoint folder (config.json, "
                   "*.safetensors): every file's path and sha256 go into the digest")
    p.set_defaults(func=_cmd_model_sha256)

    p = sub.add_parser("system", help="detect and write a target's system description")
    p.add_argument("--target-file", type=Path, required=True)
    p.add_argument("--submitter", required=True)
    p.add_argument("--division", choices=["closed", "open"], required=True)
    p.add_argument("--status", choices=["onprem", "cloud", "preview", "research"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_system)

    p = sub.add_parser("parse", help="training and LoadGen logs into Parquet tables")
    p.add_argument("--runs", type=Path, required=True, help="runs directory (runs/<target>/<benchmark>/...)")
    p.add_argument("--train-runs", type=Path, nargs="*", default=[],
                   help="training run directories (none where every benchmark is inference-only)")
    p.add_argument("--tests", type=Path, nargs="*", default=[], help="LoadGen test directories")
    p.add_argument("--mobile-runs", type=Path, nargs="*", default=[], help="Mobile app task run directories")
    p.add_argument("--training-ruleset", choices=rounds.TRAINING_RULESETS, default=rounds.TRAINING_RULESET,
                   help="the training ruleset the rows are judged under (config training.ruleset)")
    p.add_argument("--inference-round", choices=rounds.inference_rounds(), default=rounds.ROUND,
                   help="the inference round the rows are judged under (config inference.round)")
    p.add_argument("--out", type=Path, required=True, help="tables directory to create")
    p.set_defaults(func=_cmd_parse)

    p = sub.add_parser("package", help="validate everything, then write the submission tree")
    p.add_argument("--settings", required=True, help="the validated workflow config, as JSON")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--tables", type=Path, required=True)
    p.add_argument("--datasets", type=Path, required=True,
                   help="prepared datasets (<dir>/<benchmark>/manifest.json); each goes into the tree")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_package)

    p = sub.add_parser(
        "run", help="run one benchpipe command through a target's runtime (local, docker, podman, apptainer)",
        description="Run CMD where the target says: on the host, or in its container image with the "
        "inputs mounted read-only, only the output's folder writable, no network, and the host's "
        "environment filtered through the target's allow-list.",
    )
    p.add_argument("--target-file", type=Path, required=True)
    p.add_argument("--images", type=Path, default=Path("images"), help="folder of image records (images/<engine>/<image>.json)")
    p.add_argument("--input", type=Path, action="append", default=[], help="a path the command reads (repeat)")
    p.add_argument("--output", type=Path, required=True, help="the one path the command writes")
    p.add_argument("--across-nodes", action="store_true",
                   help="a training run of a target with slurm.nodes > 1: srun starts CMD on every node")
    p.add_argument("job_command", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command to run")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "slurm-task", help="run CMD (apptainer exec ...) with this SLURM task's variables passed into the container",
        description="Started by srun on every node of a multi-node run: SlurmClusterResolver in the container "
        "needs each task's own SLURM_PROCID and step layout, which apptainer --cleanenv would drop.",
    )
    p.add_argument("task_command", nargs=argparse.REMAINDER, metavar="-- CMD")
    p.set_defaults(func=_cmd_slurm_task)

    p = sub.add_parser("image", help="container images: wheelhouse, build, apptainer SIF")
    image = p.add_subparsers(dest="image_command", required=True)
    q = image.add_parser("wheelhouse", help="download the wheels of a hash lock, checked against it")
    q.add_argument("--lock", type=Path, required=True)
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_image_wheelhouse)
    q = image.add_parser("build", help="build containers/<image>/ with the network off and record it")
    q.add_argument("--engine", choices=["docker", "podman"], required=True)
    q.add_argument("--recipe", type=Path, required=True, help="containers/<image>/ (Dockerfile, requirements.lock)")
    q.add_argument("--wheelhouse", type=Path, required=True)
    q.add_argument("--project", type=Path, required=True, help="benchpipe's source (pyproject.toml), built as a wheel")
    q.add_argument("--base", required=True, help="base image reference, e.g. benchpipe/debian:bookworm")
    q.add_argument("--out", type=Path, required=True, help="image record to write")
    q.set_defaults(func=_cmd_image_build)
    q = image.add_parser("sif", help="convert a docker or podman image to an apptainer SIF")
    q.add_argument("--source-record", "--docker-record", dest="source_record", type=Path, required=True,
                   help="the image's record, images/<docker|podman>/<image>.json")
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_image_sif)

    p = sub.add_parser("verify", help="check a submission tree against its manifest.json; print its root sha256")
    p.add_argument("tree", type=Path)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("audit", help="check a submission tree item by item from the tree alone; write a report")
    p.add_argument("tree", type=Path)
    p.add_argument("--report", type=Path, help="report to write (default: <tree>.audit.json beside the tree)")
    p.add_argument("--inference-checker", type=Path, help="an mlcommons/inference checkout, to re-run its checker")
    # For an MLCommons folder that benchpipe did not make (no manifest.json): see audit.foreign.
    p.add_argument("--ruleset", help="training ruleset of an MLCommons folder, e.g. 5.1.0 (default: from its logs)")
    p.add_argument("--round", help="inference round of an MLCommons division folder, e.g. v6.1")
    p.add_argument("--summary", type=Path, help="the submitter's published summary.json or .csv to compare scores with")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("reproduce", help="run a tree's training runs and LoadGen tests again with what it recorded, "
                                          "and compare")
    p.add_argument("tree", type=Path)
    p.add_argument("--select", action="append", required=True, metavar="TARGET/BENCHMARK/{run_N,SCENARIO/MODE}",
                   help="a training run (local-cpu/digits/run_0) or LoadGen test (local-cpu/digits/Offline/accuracy; "
                        "an LLM's TEST06 too) of the tree (repeat for more)")
    p.add_argument("--model", type=Path, action="append", default=[],
                   help="a SavedModel (an LLM: checkpoint folder) a selected test served, checked against the "
                        "sha256 the tree recorded (repeat for more; the tree does not hold models)")
    p.add_argument("--data", type=Path, help="the prepared dataset (default: prepared again), checked against the tree")
    p.add_argument("--target-file", type=Path, help="the hardware target the run used (config/targets/<name>.yaml)")
    p.add_argument("--threads", type=int, default=None, help="threads for the rerun (default: every core, as the workflow)")
    p.add_argument("--time-tolerance", type=float, default=0.25, help="allowed change of time to train (fraction)")
    p.add_argument("--performance-tolerance", type=float, default=0.25,
                   help="allowed change of a LoadGen test's performance metric (fraction)")
    p.add_argument("--work", type=Path, help="scratch folder for the reruns (default: a new temporary one)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch folder (default: remove what the reruns wrote there once compared)")
    p.add_argument("--report", type=Path, help="report to write (default: <tree>.reproduce.json beside the tree)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("report", help="one self-contained HTML page showing a submission tree and its audit")
    p.add_argument("tree", type=Path)
    p.add_argument("-o", "--out", type=Path, help="page to write (default: <tree>.report.html beside the tree)")
    p.add_argument("--audit", type=Path,
                   help="the tree's audit report (default: <tree>.audit.json if it is about this tree, else audit now)")
    p.add_argument("--inference-checker", type=Path, help="an mlcommons/inference checkout, when auditing now")
    p.add_argument("--published", type=Path,
                   help="a published table (benchpipe published import): the tree's results among those")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("published", help="MLCommons' published results as a table (docs/published.md)")
    published = p.add_subparsers(dest="published_command", required=True)
    q = published.add_parser("import", help="read published summaries (the inference checker's summary.csv, the "
                                            "training result summarizer's summary.json) into the published table: "
                                            "files you have, or the known sources, fetched")
    q.add_argument("files", type=Path, nargs="*")
    q.add_argument("--source", action="append", default=[],
                   help="a published summary benchpipe knows, pinned to a commit and a sha256, e.g. inference-v6.1 "
                        "(repeatable), fetched into the shared cache")
    q.add_argument("--out", type=Path, required=True, help="the published table's folder (made or added to)")
    q.add_argument("--round", help="the round of the files, e.g. v5.1 (default: the CSV's version column, or the "
                                   "training_results_v<round> folder a summary.json lies in)")
    q.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out rows that cannot be read, each listed with its reason in the import's report, "
                        "instead of refusing the file")
    q.add_argument("--mirror", action="append", default=[],
                   help="for --source: a base URL holding the results repositories' files under the repository's "
                        "name, tried in order (file:///path/to/a/copy when air-gapped)")
    q.add_argument("--cache-dir", type=Path, help="for --source: the shared download cache (default: the user's)")
    q.add_argument("--offline", action="store_true", help="for --source: the cache's verified copies only")
    q.set_defaults(func=_cmd_published_import)

    p = sub.add_parser("compare", help="place a tree's results among the published ones (benchpipe published "
                                       "import)")
    p.add_argument("tree", type=Path)
    p.add_argument("--published", type=Path, required=True, help="the published table's folder")
    p.add_argument("--round", help="the published inference round to compare with (default: the tree's)")
    p.add_argument("--training-round", help="the published training round to compare with, e.g. v5.1 (default: "
                                            "the round of the tree's training ruleset)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("pack", help="write a verified submission tree as a deterministic .tar.zst")
    p.add_argument("tree", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="archive to write (x.tar.zst)")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("unpack", help="unpack a submission .tar.zst into a new folder and verify it")
    p.add_argument("archive", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to create")
    p.set_defaults(func=_cmd_unpack)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter would bury the one line that matters in job logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        code = args.func(args)
    except BenchpipeError as exc:
        print(f"benchpipe {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"benchpipe {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
