"""The Mobile app's SQuAD accuracy (benchpipe.mobile.squad): the app's candidate search, text mapping
and F1, and its two ZLIB TFRecord files as TensorFlow writes them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchpipe.contracts.errors import DatasetError
from benchpipe.mobile.squad import (
    MAX_ANSWER_LENGTH,
    TOP_K,
    SquadGroundTruth,
    SquadSample,
    best_span,
    f1_score,
    get_final_text,
    predicted_answer,
    prediction_text,
    read_ground_truth,
    read_samples,
    squad_f1,
    top_k,
)

LOGITS = 96  # longer than any sample's tokens, as the model's 384 are
LOW = -10.0


def sample(qas_id: str, query: list[str], doc: list[str], index_map: list[int],
           max_context: list[bool] | None = None) -> SquadSample:
    """A window as generate_tfrecords.py lays it out: [CLS] query [SEP] doc [SEP]."""
    tokens = ("[CLS]", *query, "[SEP]", *doc, "[SEP]")
    n = len(tokens)
    return SquadSample(qas_id=qas_id, input_ids=np.arange(n, dtype=np.int32), input_mask=np.ones(n, np.int32),
                       segment_ids=np.array([0] * (len(query) + 2) + [1] * (len(doc) + 1), np.int32),
                       span_tokens=tokens, query_tokens_length=len(query) + 2,
                       token_is_max_context=tuple(max_context or [True] * len(doc)),
                       token_index_map=tuple(index_map))


def logits(high: dict[int, float]) -> np.ndarray:
    values = np.full(LOGITS, LOW, dtype=np.float32)
    for index, value in high.items():
        values[index] = value
    return values


def f1(common: int, predicted: int, answer: int) -> float:
    precision, recall = common / predicted, common / answer
    return 2 * precision * recall / (precision + recall)


# Question 1 is split over two overlapping windows of its document; question 2 has one.
Q1_WORDS = ["The", "Broncos", "won", "Super", "Bowl", "50", "in", "2016."]
Q1_TOKENS = ["the", "broncos", "won", "super", "bowl", "50", "in", "2016 ."]
Q2_WORDS = ["Jim's", "team", "scored", "1,000", "points."]
Q2_TOKENS = ["jim ' s", "team", "scored", "1 , 000", "points ."]
QUERY = ["what", "?"]  # query_tokens_length 4


def two_questions() -> tuple[list[SquadSample], dict[str, SquadGroundTruth], dict[int, tuple[np.ndarray, np.ndarray]]]:
    window_a = sample("q1", QUERY, ["the", "broncos", "won", "super", "bowl"], [0, 1, 2, 3, 4],
                      [True, True, True, False, False])
    window_b = sample("q1", QUERY, ["won", "super", "bowl", "50", "in", "2016", "."], [2, 3, 4, 5, 6, 7, 7],
                      [False, True, True, True, True, True, True])
    q2 = sample("q2", QUERY, ["jim", "'", "s", "team", "score", "##d", "1", ",", "000", "points", "."],
                [0, 0, 0, 1, 2, 2, 3, 3, 3, 4, 4])
    truth = {"q1": SquadGroundTruth("q1", tuple(Q1_TOKENS), tuple(Q1_WORDS), ("Super Bowl 50",)),
             "q2": SquadGroundTruth("q2", tuple(Q2_TOKENS), tuple(Q2_WORDS), ("1,000 points", "a thousand"))}
    # Window a scores "super bowl" highest (7 + 8), but there "super" lacks max context, so its best
    # is "the ... bowl" (-10 + 8); window b has "super" with max context and scores "super bowl 50"
    # (4 + 5 = 9) above its "super bowl" (4 + 1). Question 2: "score ##d 1 , 000 points" (8 to 13).
    spans = {0: (logits({7: 7.0}), logits({8: 8.0})),
             1: (logits({5: 4.0}), logits({7: 5.0, 6: 1.0})),
             2: (logits({8: 6.0}), logits({13: 6.0}))}
    return [window_a, window_b, q2], truth, spans


def test_two_questions_mean_f1() -> None:
    samples, truth, spans = two_questions()
    assert best_span(samples[0], *spans[0]) == (4, 8, -2.0)
    assert best_span(samples[1], *spans[1]) == (5, 7, 9.0)
    assert predicted_answer(samples[1], truth["q1"], 5, 7) == "Super Bowl 50"
    assert predicted_answer(samples[2], truth["q2"], 8, 13) == "scored 1,000 points"
    # q1: exact. q2: "scored 1,000 points" against "1,000 points": 2 of 3 words, both of 2.
    expected = (1.0 + f1(2, 3, 2)) / 2
    assert squad_f1(samples, truth, spans) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.9)


def test_question_without_an_answer_counts_in_the_mean() -> None:
    samples, truth, spans = two_questions()
    samples.append(sample("q3", QUERY, ["x"], [0]))
    truth["q3"] = SquadGroundTruth("q3", ("x",), ("X",), ("X",))
    # q3 has no logits: the app still divides by its three questions.
    assert squad_f1(samples, truth, spans) == pytest.approx((1.0 + f1(2, 3, 2)) / 3, abs=1e-6)
    # q3's top-K starts and ends all lie past its tokens: no candidate at all, and still counted.
    past = logits({index: 9.0 for index in range(20, 20 + TOP_K)})
    spans[3] = (past, past)
    assert squad_f1(samples, truth, spans) == pytest.approx((1.0 + f1(2, 3, 2)) / 3, abs=1e-6)
    spans[3] = (logits({4: 9.0}), logits({4: 9.0}))
    assert squad_f1(samples, truth, spans) == pytest.approx((2.0 + f1(2, 3, 2)) / 3, abs=1e-6)


def test_span_past_the_ground_truth_scores_zero_but_counts() -> None:
    samples, truth, spans = two_questions()
    truth["q2"] = SquadGroundTruth("q2", ("jim ' s",), ("Jim's",), ("1,000 points",))  # one word only
    assert squad_f1(samples, truth, spans) == pytest.approx(1.0 / 2, abs=1e-6)
    # Words past the ground truth further into the span are left out; its first word counts.
    shorter = SquadGroundTruth("q2", tuple(Q2_TOKENS[:4]), tuple(Q2_WORDS[:4]), ("1,000",))
    assert predicted_answer(samples[2], shorter, 8, 13) == "scored 1,000"


def test_question_without_ground_truth_is_refused() -> None:
    samples, truth, spans = two_questions()
    del truth["q2"]
    with pytest.raises(DatasetError, match="'q2'.*no ground truth"):
        squad_f1(samples, truth, spans)


# --- the skip rules: each one moves the chosen span ----------------------------------------------

LONG = sample("long", QUERY, [f"t{i}" for i in range(40)], list(range(40)),
              [i != 6 for i in range(40)])  # tokens 4..43, the final [SEP] at 44; token 10 lacks max context


@pytest.mark.parametrize(("starts", "ends", "chosen"), [
    ({12: 5.0}, {8: 5.0, 14: 4.0}, (12, 14)),  # end before start
    ({5: 5.0}, {40: 5.0, 20: 4.0}, (5, 20)),  # 36 tokens: longer than 30
    ({5: 5.0}, {5 + MAX_ANSWER_LENGTH - 1: 5.0, 20: 4.0}, (5, 34)),  # exactly 30 tokens: kept
    ({2: 5.0, 6: 4.0}, {8: 5.0}, (6, 8)),  # starts inside the query ("?")
    ({46: 5.0, 40: 4.0}, {47: 5.0, 42: 4.0}, (40, 42)),  # beyond span_tokens (the logits run on)
    ({40: 5.0}, {44: 5.0, 42: 4.0}, (40, 42)),  # ends on the final [SEP]: it has no document index
    ({10: 5.0, 11: 4.0}, {12: 5.0}, (11, 12)),  # "t6" is not in its max context here
])
def test_skip_rules(starts: dict[int, float], ends: dict[int, float], chosen: tuple[int, int]) -> None:
    span = best_span(LONG, logits(starts), logits(ends))
    assert span is not None and span[:2] == chosen


def test_only_the_top_k_logits_are_candidates() -> None:
    starts = {index: 9.0 for index in range(45, 45 + TOP_K)}  # the 20 best starts are all past the tokens
    starts[11] = 8.0
    assert best_span(LONG, logits(starts), logits({12: 5.0})) is None
    del starts[45]
    assert best_span(LONG, logits(starts), logits({12: 5.0}))[:2] == (11, 12)


def test_top_k_orders_ties_by_index_and_pads_with_zero() -> None:
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0]), 3) == [1, 2, 3]
    assert top_k(np.array([5.0, 3.0]), 4) == [0, 1, 0, 0]
    assert len(top_k(np.zeros(LOGITS))) == TOP_K


def test_equal_scores_keep_the_first_candidate() -> None:
    # (6, 8) and (7, 8) score the same: the earlier start in top-K order stays.
    assert best_span(LONG, logits({6: 5.0, 7: 5.0}), logits({8: 5.0}))[:2] == (6, 8)


# --- the answer's text -------------------------------------------------------------------------


def test_wordpieces_join_and_map_back_to_the_words() -> None:
    window = sample("q", QUERY, ["jim", "'", "s", "score", "##d", "1", ",", "000", "un", "##aff", "##able"],
                    [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    assert prediction_text(window, 4, 8) == "jim ' s scored"
    assert prediction_text(window, 9, 11) == "1 , 000"
    assert prediction_text(window, 12, 14) == "unaffable"
    assert get_final_text("jim ' s", "jim ' s scored", "Jim's scored") == "Jim's"
    assert get_final_text("1 , 000", "scored 1 , 000 points .", "scored 1,000 points.") == "1,000"
    assert get_final_text("points", "scored 1 , 000 points .", "scored 1,000 points.") == "points"
    assert get_final_text("cafe", "the cafe", "The Café") == "Café"  # accents stripped in the tokens
    assert get_final_text("missing", "the cafe", "The Café") == "The Café"  # not found: all the words
    truth = SquadGroundTruth("q", ("jim ' s", "scored", "1 , 000", "unaffable"),
                             ("Jim's", "scored", "1,000", "Unaffable."), ())
    assert predicted_answer(window, truth, 4, 6) == "Jim's"
    assert predicted_answer(window, truth, 6, 8) == "s scored"
    assert predicted_answer(window, truth, 12, 14) == "Unaffable"


def test_prediction_text_whitespace_as_absl_cleans_it() -> None:
    window = sample("q", QUERY, ["a", "##", "b\t", " c"], [0, 0, 1, 2])
    assert prediction_text(window, 4, 5) == "a"
    assert prediction_text(window, 6, 7) == "b c"  # "b\t  c": the run kept as its last character


# --- F1 -----------------------------------------------------------------------------------------


def test_f1_normalises_articles_punctuation_and_case() -> None:
    assert f1_score(["The Broncos."], "the broncos") == 1.0
    assert f1_score(["Denver Broncos"], "denver, broncos!") == 1.0
    assert f1_score(["Denver Broncos"], "Broncos") == pytest.approx(f1(1, 1, 2))
    # Word by word: the article becomes an empty word, counted in the answer's length.
    assert f1_score(["The Denver Broncos"], "Denver Broncos") == pytest.approx(f1(2, 2, 3))
    assert f1_score(["the cat"], "a dog") == pytest.approx(0.5)  # the two empty words match
    assert f1_score(["the broncos"], "THE broncos") == pytest.approx(f1(1, 2, 2))  # "THE" is no article
    assert f1_score(["école"], "ÉCOLE") == 0.0  # ASCII case only


def test_f1_counts_repeated_words() -> None:
    assert f1_score(["go go stop"], "go go") == pytest.approx(f1(2, 2, 3))
    assert f1_score(["go"], "go go") == pytest.approx(f1(1, 2, 1))


def test_f1_takes_the_best_answer() -> None:
    answers = ["Denver Broncos team", "Broncos", "Panthers"]
    assert f1_score(answers, "Broncos") == 1.0
    assert f1_score(answers[::-1], "Broncos") == 1.0
    assert f1_score(["Denver Broncos team", "Denver"], "Denver Broncos") == pytest.approx(f1(2, 2, 3))
    assert f1_score([], "Broncos") == 0.0


def test_f1_of_an_empty_prediction() -> None:
    assert f1_score(["Denver Broncos"], "") == 0.0
    assert f1_score(["Denver Broncos", "1,000"], "") == 0.0
    # The app's quirk: the empty prediction's one empty word matches an article's.
    assert f1_score(["the answer"], "") == pytest.approx(f1(1, 1, 2))


# --- the app's files ----------------------------------------------------------------------------


def _bytes(values: list[str]):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))


def _ints(values):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def sample_features(s: SquadSample, unique_id: int) -> dict:
    """The features generate_tfrecords.py's FeatureWriter writes."""
    return {"qas_id": _bytes([s.qas_id]), "tokens": _bytes(list(s.span_tokens)),
            "token_to_orig_map": _ints(s.token_index_map), "token_is_max_context": _ints(s.token_is_max_context),
            "unique_ids": _ints([unique_id]), "input_ids": _ints(s.input_ids), "input_mask": _ints(s.input_mask),
            "segment_ids": _ints(s.segment_ids)}


def truth_features(t: SquadGroundTruth) -> dict:
    """The features generate_tfrecords.py's GroundTruthWriter writes."""
    return {"tokens": _bytes(list(t.tokens)), "words": _bytes(list(t.words)), "qas_id": _bytes([t.qas_id]),
            "answers": _bytes(list(t.answers))}


def at(path: Path) -> str:
    """A pattern for an error message about ``path``."""
    return f"^{re.escape(str(path))}: "


def write(path: Path, records: list[dict], compression: str = "ZLIB") -> Path:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for features in records:
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return path


def test_files_round_trip_and_score(tmp_path: Path) -> None:
    samples, truth, spans = two_questions()
    eval_file = write(tmp_path / "squad_eval.tfrecord", [sample_features(s, 1000 + i) for i, s in enumerate(samples)])
    gt_file = write(tmp_path / "squad_groundtruth.tfrecord", [truth_features(t) for t in truth.values()])
    assert eval_file.read_bytes()[:1] == b"\x78"  # a zlib stream, as the app's files are

    read = read_samples(eval_file)
    assert read == samples
    for got, want in zip(read, samples):
        for name in ("input_ids", "input_mask", "segment_ids"):
            assert getattr(got, name).dtype == np.int32
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert [s.query_tokens_length for s in read] == [4, 4, 4]
    assert read_ground_truth(gt_file) == truth
    assert squad_f1(read, read_ground_truth(gt_file), spans) == pytest.approx((1.0 + f1(2, 3, 2)) / 2, abs=1e-6)

    with pytest.raises(DatasetError, match="corrupt ZLIB data"):  # a plain reader's file is not the app's
        read_samples(write(tmp_path / "plain.tfrecord", [sample_features(samples[0], 0)], compression=""))


def test_damaged_files_name_file_and_offset(tmp_path: Path) -> None:
    samples, _, _ = two_questions()
    records = [sample_features(s, i) for i, s in enumerate(samples)]
    plain = write(tmp_path / "plain.tfrecord", records, compression="")
    data = plain.read_bytes()
    first = int.from_bytes(data[:8], "little")
    second = 12 + first + 4  # where record 1 begins
    assert len(read_samples(plain, compression="")) == 3

    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[:-5])
    with pytest.raises(DatasetError, match=at(cut) + rf"record 2: truncated: \d+ bytes from byte \d+ run past "
                                           rf"the end at byte {len(data) - 5}$"):
        read_samples(cut, compression="")

    flipped = bytearray(data)
    flipped[second + 12 + 3] ^= 0x01
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match=at(bad) + rf"record 1: data CRC mismatch in bytes {second + 12} to "):
        read_samples(bad, compression="")
    flipped = bytearray(data)
    flipped[second] ^= 0x01
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match=at(bad) + rf"record 1: length CRC mismatch at byte {second}$"):
        read_samples(bad, compression="")

    zipped = write(tmp_path / "zipped.tfrecord", records)
    compressed = zipped.read_bytes()
    zipped.write_bytes(compressed[:-3])
    with pytest.raises(DatasetError, match=at(zipped) + rf"the ZLIB stream is cut off at byte {len(compressed) - 3}, "):
        read_samples(zipped)
    flipped = bytearray(compressed)
    flipped[10] ^= 0xFF
    zipped.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match=at(zipped) + r"corrupt ZLIB data, found at byte (\d+): ") as damaged:
        read_samples(zipped)
    found = int(re.search(r"found at byte (\d+)", str(damaged.value)).group(1))
    assert 10 <= found < len(compressed)


def test_bad_records_name_record_and_feature(tmp_path: Path) -> None:
    samples, truth, _ = two_questions()
    records = [sample_features(s, i) for i, s in enumerate(samples)]
    del records[1]["token_is_max_context"]
    path = write(tmp_path / "missing.tfrecord", records)
    with pytest.raises(DatasetError, match=at(path) + r"record 1: feature 'token_is_max_context' missing$"):
        read_samples(path)

    records = [sample_features(s, i) for i, s in enumerate(samples)]
    records[2]["tokens"] = _ints([1, 2])
    path = write(tmp_path / "mistyped.tfrecord", records)
    with pytest.raises(DatasetError, match=at(path) + r"record 2: feature 'tokens' is int64_list, not bytes_list$"):
        read_samples(path)

    records = [sample_features(s, i) for i, s in enumerate(samples)]
    records[0]["token_is_max_context"] = _ints([1])
    path = write(tmp_path / "short.tfrecord", records)
    with pytest.raises(DatasetError, match=at(path) + r"record 0: 1 token_is_max_context values for 5 "):
        read_samples(path)

    gt = [truth_features(t) for t in truth.values()]
    del gt[1]["answers"]
    path = write(tmp_path / "gt.tfrecord", gt)
    with pytest.raises(DatasetError, match=at(path) + r"record 1: feature 'answers' missing$"):
        read_ground_truth(path)
    gt = [truth_features(t) for t in truth.values()] * 2
    path = write(tmp_path / "twice.tfrecord", gt)
    with pytest.raises(DatasetError, match=at(path) + r"record 2: question 'q1' again \(first in record 0\)$"):
        read_ground_truth(path)
