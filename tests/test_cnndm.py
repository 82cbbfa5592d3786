"""llama3.1-8b's data (the reference's cnn_eval.json, prepared) and accuracy (ROUGE, gen_len), and the stand-in."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from benchpipe.benchmarks.llama import cnndm
from benchpipe.benchmarks.llama.cnndm_stand_in import (
    BEGIN,
    END,
    StandInShape,
    stand_in_records,
    stand_in_vocabulary,
    write_stand_in,
)
from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError, InferenceError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT
from benchpipe.infer import llm_accuracy
from benchpipe.infer.llm_accuracy import RougeAccuracy

ROUND = "v6.1"


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> dict[str, Path]:
    return write_stand_in(tmp_path_factory.mktemp("stand-in"), shape=StandInShape(records=40), seed=3)


def _write(path: Path, records) -> Path:
    path.write_text(json.dumps(records))
    return path


GOOD = [{"input": "a b c", "tok_input": [0, 5, 6, 7], "output": "b c ."},
        {"input": "d", "tok_input": [0, 9], "output": "d .", "instruction": "ignored"}]


def test_reading_the_reference_form_keeps_the_ids_and_texts_in_order(tmp_path):
    data = cnndm.read_reference(_write(tmp_path / "cnn_eval.json", GOOD), vocabulary=10)
    assert len(data) == 2
    assert data.tokens.dtype == np.int32 and data.offsets.tolist() == [0, 4, 6]
    assert data.prompt(0).tolist() == [0, 5, 6, 7] and data.prompt(1).tolist() == [0, 9]
    assert data.inputs == ("a b c", "d") and data.targets == ("b c .", "d .")


def test_pandas_column_form_reads_the_same(tmp_path):
    # What DataFrame.to_json() writes by default, and pandas.read_json reads as well as the list.
    columns = {field: {str(i): r[field] for i, r in enumerate(GOOD)} for field in cnndm.FIELDS}
    by_columns = cnndm.read_reference(_write(tmp_path / "columns.json", columns), vocabulary=10)
    by_records = cnndm.read_reference(_write(tmp_path / "records.json", GOOD), vocabulary=10)
    assert by_columns.inputs == by_records.inputs and by_columns.targets == by_records.targets
    assert np.array_equal(by_columns.tokens, by_records.tokens)
    assert np.array_equal(by_columns.offsets, by_records.offsets)


def _record(**changes):
    record = {"input": "x", "tok_input": [0, 1], "output": "y"}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not ...}


@pytest.mark.parametrize("bad, why", [
    ("not a record", "a str, not an object"),
    (_record(output=...), "no output"),
    (_record(input=..., tok_input=...), "no input, tok_input"),
    (_record(input=7), "input is a int, not text"),
    (_record(output=None), "output is a NoneType, not text"),
    (_record(tok_input=[]), "tok_input is not a non-empty list"),
    (_record(tok_input="0 1"), "tok_input is not a non-empty list"),
    (_record(tok_input=[0, 1.0]), r"tok_input\[1\] is 1.0, not an integer"),
    (_record(tok_input=[True, 1]), r"tok_input\[0\] is True, not an integer"),
    (_record(tok_input=[0, -1]), r"tok_input\[1\] = -1 is outside the tokenizer's vocabulary \[0, 10\)"),
    (_record(tok_input=[0, 3, 10]), r"tok_input\[2\] = 10 is outside"),
])
def test_each_kind_of_bad_record_is_named_with_the_file_and_its_index(tmp_path, bad, why):
    path = _write(tmp_path / "cnn_eval.json", [GOOD[0], GOOD[1], bad])
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: record 2: {why}"):
        cnndm.read_reference(path, vocabulary=10)


@pytest.mark.parametrize("text, why", [
    ('[{"input": "x", "tok_input": [0], "output": "y"}, {"input": ', r"record 1: not JSON"),
    ('[{"input": "x", "tok_input": [0], "output": "y"} {"input": "x"}]', r"after record 0: expected ',' or ']'"),
    ('[{"input": "x", "tok_input": [0], "output": "y"}] []', "text after the list of records"),
    ("[]", "no records"),
    ('"cnn"', "not a JSON list of records"),
    ('{"input": {"0": "x"}}', "a JSON object, but no column tok_input, output"),
])
def test_a_file_that_is_not_a_list_of_records_is_named(tmp_path, text, why):
    path = tmp_path / "cnn_eval.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: {why}"):
        cnndm.read_reference(path, vocabulary=10)
    with pytest.raises(DatasetError, match="missing"):
        cnndm.read_reference(tmp_path / "absent.json", vocabulary=10)


def _sources(files: dict[str, Path]) -> list[Source]:
    return [Source(name, f"file://{path}", sha256_file(path)) for name, path in files.items()]


def test_prepare_writes_shards_and_a_manifest_that_read_back_the_reference(stand_in, tmp_path, monkeypatch):
    monkeypatch.setattr(cnndm, "SHARD_RECORDS", 16)  # three shards, the last one short
    out = tmp_path / "data" / "llama3.1-8b"
    manifest = cnndm.prepare(_sources(stand_in), out, cache_dir=tmp_path / "cache")
    assert manifest["records"] == 40 and manifest["full"] is False and manifest["vocabulary_size"] == 64
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, 8]
    assert json.loads((out / cnndm.MANIFEST).read_text()) == manifest
    assert (out / "raw" / cnndm.EVAL_FILE).read_bytes() == stand_in[cnndm.EVAL_FILE].read_bytes()
    assert cnndm.tokenizer_path(out).read_bytes() == stand_in[cnndm.TOKENIZER_FILE].read_bytes()

    expected = cnndm.read_reference(stand_in[cnndm.EVAL_FILE], vocabulary=64)
    loaded = cnndm.load_prepared(out)
    assert loaded.inputs == expected.inputs and loaded.targets == expected.targets
    assert loaded.tokens.dtype == np.int32 and np.array_equal(loaded.tokens, expected.tokens)
    assert np.array_equal(loaded.offsets, expected.offsets)
    lengths = expected.prompt_lengths()
    assert manifest["prompt_tokens"] == {"min": lengths.min(), "max": lengths.max(), "total": lengths.sum()}

    shard = out / manifest["shards"][1]["path"]
    shard.write_bytes(shard.read_bytes() + b"\0")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(shard))}: sha256 .* does not match the manifest"):
        cnndm.load_prepared(out)


def test_prepare_checks_the_ids_against_the_tokenizer_and_leaves_nothing(stand_in, tmp_path):
    records = json.loads(stand_in[cnndm.EVAL_FILE].read_text())
    records[5]["tok_input"][3] = 64  # one past the stand-in's vocabulary
    bad = _write(tmp_path / cnndm.EVAL_FILE, records)
    out = tmp_path / "data"
    sources = _sources({cnndm.EVAL_FILE: bad, cnndm.TOKENIZER_FILE: stand_in[cnndm.TOKENIZER_FILE]})
    with pytest.raises(DatasetError, match=r"llama3.1-8b: raw/cnn_eval.json: record 5: tok_input\[3\] = 64 is "
                                           r"outside the tokenizer's vocabulary \[0, 64\)") as error:
        cnndm.prepare(sources, out, cache_dir=tmp_path / "cache")
    assert ".partial" not in str(error.value)
    assert not out.exists()
    with pytest.raises(DatasetError, match="no source tokenizer.json"):
        cnndm.prepare(sources[:1], out, cache_dir=tmp_path / "cache")


def test_a_tokenizer_file_that_is_not_one_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(DatasetError, match=rf"{re.escape(str(tmp_path / 'tokenizer.json'))}: not a Hugging Face"):
        cnndm.load_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(DatasetError, match="missing"):
        cnndm.load_tokenizer(tmp_path / "absent.json")


# --- the stand-in


def test_the_stand_in_is_small_learnable_and_deterministic(stand_in, tmp_path):
    again = write_stand_in(tmp_path, shape=StandInShape(records=40), seed=3)
    assert {n: p.read_bytes() for n, p in again.items()} == {n: p.read_bytes() for n, p in stand_in.items()}
    other = stand_in_records(StandInShape(records=40), seed=4)
    assert [r["output"] for r in other] != [r["output"] for r in json.loads(stand_in[cnndm.EVAL_FILE].read_text())]

    data = cnndm.read_reference(stand_in[cnndm.EVAL_FILE], vocabulary=64)
    lengths = data.prompt_lengths()
    assert 24 <= lengths.min() and lengths.max() <= 36 and len(set(lengths.tolist())) > 1  # ragged
    summaries = set(data.targets)
    assert 1 < len(summaries) <= 8
    for text, summary in zip(data.inputs, data.targets):
        # The summary is the article's first sentence: learnable from the prompt alone.
        assert text.startswith("summarize : " + summary + " ") and text.endswith(" summary :")
        assert len(summary.split()) == 7
    # Each topic opens with a word of its own, so the first article word names the summary.
    assert len({s.split()[0] for s in summaries}) == len(summaries)


def test_the_stand_in_tokenizer_round_trips_and_drops_special_tokens(stand_in):
    tokenizer = cnndm.load_tokenizer(stand_in[cnndm.TOKENIZER_FILE])
    vocabulary = stand_in_vocabulary(StandInShape())
    assert cnndm.vocabulary_size(tokenizer) == len(vocabulary) == 64
    assert tokenizer.token_to_id(BEGIN) == 0 and tokenizer.token_to_id(END) == 1
    for record in json.loads(stand_in[cnndm.EVAL_FILE].read_text())[:5]:
        ids = tokenizer.encode(record["input"]).ids
        assert ids == record["tok_input"] and ids[0] == 0
        assert tokenizer.decode(ids, skip_special_tokens=True) == record["input"]
        summary = [0, *tokenizer.encode(record["output"], add_special_tokens=False).ids, 1]
        assert tokenizer.decode(summary, skip_special_tokens=True) == record["output"]
        assert tokenizer.decode(summary, skip_special_tokens=False) == f"{BEGIN} {record['output']} {END}"


@pytest.mark.parametrize("shape, why", [
    (StandInShape(vocabulary=65), "at most 57 words"),
    (StandInShape(vocabulary=7), "from 8 to 64"),
    (StandInShape(vocabulary=12, topics=8), "cannot give 8 topics"),
    (StandInShape(min_filler_sentences=3, max_filler_sentences=2), "not a range"),
    (StandInShape(records=0), "at least 1"),
])
def test_stand_in_sizes_it_cannot_make_are_refused(shape, why):
    with pytest.raises(ValueError, match=why):
        stand_in_records(shape, seed=0)


def test_the_command_line_prints_the_sources_it_wrote(tmp_path, capsys):
    from benchpipe.cli import main

    main(["datasets", "stand-in-cnndm", "--out", str(tmp_path), "--records", "5", "--benchmark", "llama31_8b_edge"])
    printed = capsys.readouterr().out
    assert printed.startswith("datasets:\n  sources:\n    llama31_8b_edge:\n")
    for name in (cnndm.EVAL_FILE, cnndm.TOKENIZER_FILE):
        assert f'{name}: {{urls: ["file://{(tmp_path / name).resolve()}"], sha256: {sha256_file(tmp_path / name)}}}' \
            in printed
    assert len(json.loads((tmp_path / cnndm.EVAL_FILE).read_text())) == 5


# --- ROUGE, sentences, the accuracy log


def test_rouge_on_known_strings_matches_hand_computed_values():
    # the cat sat on the mat / the cat lay on the mat: 5 of 6 words, 3 of 5 bigrams, an LCS of 5.
    scores = llm_accuracy.rouge_scores(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores == {"rouge1": 83.3333, "rouge2": 60.0, "rougeL": 83.3333, "rougeLsum": 83.3333}
    # Porter stemming: "running dogs" and "run dog" are the same two tokens; case and punctuation go.
    assert llm_accuracy.rouge_scores(["Running, dogs!"], ["run dog"])["rouge1"] == 100.0
    # Per sample, then the mean: 1.0 and 0.0 give 50, whatever the lengths.
    two = llm_accuracy.rouge_scores(["a b c d e f", "x"], ["a b c d e f", "y z"])
    assert two["rouge1"] == 50.0 and two["rouge2"] == 50.0


def test_rouge_lsum_compares_sentence_by_sentence_after_the_split():
    target = "The storm hit the coast. Power was cut to homes."
    prediction = "Power was cut to homes. The storm hit the coast."
    predictions, targets = llm_accuracy.postprocess([prediction]), llm_accuracy.postprocess([target])
    assert targets == ["The storm hit the coast.\nPower was cut to homes."]
    scores = llm_accuracy.rouge_scores(predictions, targets)
    assert scores["rougeLsum"] == 100.0 and scores["rougeL"] < 100.0 and scores["rouge1"] == 100.0


def test_rouge_is_rouge_score_itself_averaged(stand_in):
    from rouge_score import rouge_scorer

    rng = np.random.default_rng(0)
    words = "the storm police court rain rains raining a of . city mayor said".split()
    predictions = [" ".join(rng.choice(words, int(rng.integers(1, 20)))) for _ in range(30)]
    targets = [" ".join(rng.choice(words, int(rng.integers(1, 20)))) for _ in range(30)]
    scorer = rouge_scorer.RougeScorer(list(llm_accuracy.ROUGE_TYPES), use_stemmer=True)
    direct = [scorer.score(t, p) for p, t in zip(predictions, targets)]
    ours = llm_accuracy.rouge_scores(predictions, targets)
    for name in llm_accuracy.ROUGE_TYPES:
        assert ours[name] == round(float(np.mean([s[name].fmeasure for s in direct])) * 100, 4)


@pytest.mark.parametrize("text, sentences", [
    ("Mr. Smith met U.S. officials in Washington, D.C. on Monday. They talked.",
     ["Mr. Smith met U.S. officials in Washington, D.C. on Monday.", "They talked."]),
    ("Apple Inc. unveiled a phone in Cupertino, Calif. The phone costs $1.5 million. It sells on Sept. 19.",
     ["Apple Inc. unveiled a phone in Cupertino, Calif.", "The phone costs $1.5 million.", "It sells on Sept. 19."]),
    ("Harry Potter star turns 18 .\nHe has no plans to spend it .",
     ["Harry Potter star turns 18 .", "He has no plans to spend it ."]),
    ("no period at all", ["no period at all"]),
])
def test_sentences_are_split_as_punkt_with_news_abbreviations(text, sentences):
    assert llm_accuracy.split_sentences(text) == sentences


def _log(path: Path, entries: list[tuple[int, list[int]]]) -> Path:
    path.write_text(json.dumps([
        {"seq_id": n, "qsl_idx": i, "data": np.asarray(ids, np.int32).tobytes().hex().upper()}
        for n, (i, ids) in enumerate(entries)
    ]))
    return path


def test_the_log_is_read_as_int32_ids_the_first_entry_of_a_sample_kept(tmp_path):
    log = _log(tmp_path / ACCURACY_LOG, [(3, [7, 70000, 2]), (1, []), (3, [9])])
    generated = llm_accuracy.read_accuracy_log(log)
    assert list(generated) == [3, 1]
    assert generated[3].dtype == np.int32 and generated[3].tolist() == [7, 70000, 2]
    assert generated[1].tolist() == []


@pytest.mark.parametrize("entries, why", [
    ('[{"qsl_idx": 0, "data": "00000000"}, {"qsl_idx": 1}]', r"entry 1: no qsl_idx and hex data \(KeyError"),
    ('[{"qsl_idx": 0, "data": "0G"}]', "entry 0: no qsl_idx and hex data"),
    ('[{"qsl_idx": 0, "data": "000000"}]', r"entry 0 \(qsl_idx 0\): 3 bytes of data, not whole 4-byte"),
    ('[{"qsl_idx": -1, "data": ""}]', "entry 0: qsl_idx -1 is not a sample index"),
    ('[{"qsl_idx": "2", "data": ""}]', "entry 0: qsl_idx '2' is not a sample index"),
    ("[7]", "entry 0: no qsl_idx and hex data"),
    ("[]", "no samples in the accuracy log"),
    ('{"qsl_idx": 0}', "not a JSON list"),
    ("[{", "cannot read accuracy log"),
])
def test_a_malformed_log_names_the_file_and_entry(tmp_path, entries, why):
    log = tmp_path / ACCURACY_LOG
    log.write_text(entries)
    with pytest.raises(InferenceError, match=rf"{re.escape(str(log))}: {why}"):
        llm_accuracy.read_accuracy_log(log)


def _answers(tokenizer_path: Path, data: cnndm.CnnDailyMail, indexes, wrong=()) -> list[tuple[int, list[int]]]:
    """What a SUT answers: the summary's ids then end-of-text; ``wrong`` samples answer another summary."""
    tokenizer = cnndm.load_tokenizer(tokenizer_path)
    answers = []
    for i in indexes:
        text = data.targets[(i + 1) % len(data)] if i in wrong else data.targets[i]
        answers.append((i, [*tokenizer.encode(text, add_special_tokens=False).ids, 1]))
    return answers


def test_accuracy_decodes_scores_and_counts_as_the_reference(stand_in, tmp_path):
    data = cnndm.read_reference(stand_in[cnndm.EVAL_FILE], vocabulary=64)
    answers = _answers(stand_in[cnndm.TOKENIZER_FILE], data, range(10))
    log = _log(tmp_path / ACCURACY_LOG, [*answers, (4, [5, 5, 5])])  # a repeat of sample 4, ignored
    result = llm_accuracy.rouge_accuracy(log, data, stand_in[cnndm.TOKENIZER_FILE])
    assert result == RougeAccuracy(rouge1=100.0, rouge2=100.0, rougeL=100.0, rougeLsum=100.0,
                                   gen_len=sum(len(data.targets[i]) for i in range(10)), gen_num=10)


def test_gen_len_counts_the_characters_of_the_processed_predictions(stand_in, tmp_path):
    tokenizer_path = tmp_path / "tokenizer.json"
    tokenizer_path.write_bytes(stand_in[cnndm.TOKENIZER_FILE].read_bytes())
    tokenizer = cnndm.load_tokenizer(tokenizer_path)
    data = cnndm.CnnDailyMail(inputs=("x", "y"), tokens=np.zeros(2, np.int32), offsets=np.arange(3),
                              targets=("river town .", "city ."))
    # Special tokens and the spaces around them go ("river town ." is 12 characters); two
    # sentences are one line each, joined by one newline; an empty answer counts 0 characters.
    two = tokenizer.encode("river town . city .", add_special_tokens=False).ids
    log = _log(tmp_path / ACCURACY_LOG, [(1, [0, *two, 1, 1]), (0, [])])
    result = llm_accuracy.rouge_accuracy(log, data, tokenizer_path)
    assert (result.gen_len, result.gen_num) == (len("river town .\ncity ."), 2)
    assert result.rouge1 == 25.0  # F of 1 of 3 words against 1 of 1 is 0.5, and the empty answer 0


def test_accuracy_refuses_samples_and_ids_it_cannot_score(stand_in, tmp_path):
    data = cnndm.read_reference(stand_in[cnndm.EVAL_FILE], vocabulary=64)
    log = _log(tmp_path / ACCURACY_LOG, [(0, [5]), (40, [5])])
    with pytest.raises(InferenceError, match=rf"{re.escape(str(log))}: qsl_idx 40 is beyond the dataset's 40"):
        llm_accuracy.rouge_accuracy(log, data, stand_in[cnndm.TOKENIZER_FILE])
    _log(log, [(0, [5]), (2, [5, 64])])
    with pytest.raises(InferenceError, match=r"qsl_idx 2: token id 64 is outside the tokenizer's vocabulary"):
        llm_accuracy.rouge_accuracy(log, data, stand_in[cnndm.TOKENIZER_FILE])
    _log(log, [(0, [-3])])
    with pytest.raises(InferenceError, match=r"qsl_idx 0: token id -3 is outside"):
        llm_accuracy.rouge_accuracy(log, data, stand_in[cnndm.TOKENIZER_FILE])


# --- what the official checker reads


def _accuracy_check(checkout: Path, lines: list[str], model: str):
    """The official checker's accuracy_result_check over accuracy.txt's lines: its patterns,
    targets, upper limits and hash line, as it runs them on a submission."""
    sys.path.insert(0, str(checkout / "tools" / "submission"))
    try:
        from submission_checker.checks.accuracy_check import AccuracyCheck
        from submission_checker.configuration.configuration import Config
        from submission_checker.loader import SubmissionLogs
    finally:
        sys.path.pop(0)
    data = {"benchmark": model, "scenario": "Offline", "division": "closed"}
    logs = SubmissionLogs(accuracy_log={"effective_scenario": "Offline"}, accuracy_result=lines, loader_data=data)
    check = AccuracyCheck(logging.getLogger("official-accuracy"), "accuracy", Config(ROUND, {}), logs)
    return check.accuracy_result_check(), data.get("accuracy_metrics")


def test_the_checker_parses_the_written_accuracy_into_our_numbers(stand_in, tmp_path, inference_checkout):
    data = cnndm.read_reference(stand_in[cnndm.EVAL_FILE], vocabulary=64)
    answers = _answers(stand_in[cnndm.TOKENIZER_FILE], data, range(40), wrong={3, 17, 22})
    _log(tmp_path / ACCURACY_LOG, answers)
    result = llm_accuracy.write_rouge_accuracy(tmp_path, data, stand_in[cnndm.TOKENIZER_FILE])
    assert 0 < result.rougeLsum < 100 and result.gen_num == 40
    lines = (tmp_path / ACCURACY_TXT).read_text().splitlines()
    assert lines[1] == f"hash={hashlib.sha256((tmp_path / ACCURACY_LOG).read_bytes()).hexdigest()}"
    for model in ("llama3.1-8b", "llama3.1-8b-edge"):
        passed, parsed = _accuracy_check(inference_checkout, lines, model)
        assert {k: float(v) for k, v in parsed.items()} == {
            "ROUGE1": result.rouge1, "ROUGE2": result.rouge2, "ROUGEL": result.rougeL,
            "ROUGELSUM": result.rougeLsum, "GEN_LEN": result.gen_len,
        }
        assert not passed  # 40 stand-in summaries are far below the reference's gen_len


@pytest.mark.parametrize("gen_len, passes", [(8_167_644, True), (int(8_167_644 * 0.89), False),
                                             (int(8_167_644 * 1.11), False)])
def test_the_checker_judges_the_line_against_the_reference_and_gen_len_limits(inference_checkout, gen_len, passes):
    # The reference's own llama3.1-8b scores (targets are 99 % of these; gen_len within ±10 %).
    result = RougeAccuracy(rouge1=38.7792, rouge2=15.9075, rougeL=24.4957, rougeLsum=35.793, gen_len=gen_len,
                           gen_num=13_368)
    line = result.reference_line()
    assert line == ("{'rouge1': '38.7792', 'rouge2': '15.9075', 'rougeL': '24.4957', 'rougeLsum': '35.793', "
                    f"'gen_len': {gen_len}, 'gen_num': 13368}}")
    assert _accuracy_check(inference_checkout, [line, "hash=" + "ab" * 32], "llama3.1-8b")[0] is passes
    assert _accuracy_check(inference_checkout, [line], "llama3.1-8b")[0] is False  # no hash line
