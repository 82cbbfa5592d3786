"""MobileBERT's SQuAD v1.1 accuracy as the MLPerf Mobile app computes it (``Squad::ComputeAccuracy``).

The app (mlcommons/mobile_app_open, flutter/cpp/datasets) scores a run from two TFRecord files,
both ZLIB-compressed (squad_utils/generate_tfrecords.py writes them so, and
squad_utils/tfrecord_reader.h opens them so), each record a ``tf.train.Example``:

    samples (eval)  one per model input, a window of a document
        qas_id                bytes, one value: the question
        tokens                bytes: [CLS] query [SEP] window tokens (WordPiece) [SEP]
        token_to_orig_map     int64: per window token, its word's index in the document
        token_is_max_context  int64: per window token, 1 where this window gives it most context
        input_ids, input_mask, segment_ids   int64: the model's three inputs
        unique_ids            int64 (not read by the app)
    ground truth    one per question
        qas_id                bytes, one value
        words                 bytes: the document's words, split at whitespace
        tokens                bytes: per word, its BasicTokenizer tokens joined by spaces
        answers               bytes: the accepted answers

The model's outputs are (end_logits, start_logits) in that order: squad.cc ``ProcessOutput``
takes output 1 as the start and output 0 as the end. ``squad_f1`` takes each sample's logits as
(start, end).

The mean is over every question of the sample file: one that gets no answer (no logits, or a
span whose first word is past the ground truth's words) counts as 0, as the app counts it.
Where the app's F1 differs from the official SQuAD script's, this follows the app:

- F1 splits on single spaces and normalises word by word, so an article or a punctuation-only
  word becomes an empty word that matches any other: "the cat" against "a dog" scores 0.5,
  and an empty prediction against "the answer" 2/3;
- only the articles a, an, the, A, An, The are dropped, only ASCII punctuation and case;
- the arithmetic is float32, as the app's (the questions are summed in file order; the app's
  order is its hash map's).

Where the app reads past a vector (no valid span at all, or a span on the final [SEP], which has
no document index), its result is undefined; here such a question scores 0 and such a span is
never a candidate. A question missing from the ground truth (the app would score it
against ground-truth record 0) and a repeated ground-truth question are refused; so is a damaged
record, which the app's reader stops at silently.
"""

from __future__ import annotations

import json
import re
import string
import struct
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe.contracts.errors import DatasetError, InferenceError

TOP_K = 20  # squad.cc: K, candidates per logit vector
MAX_ANSWER_LENGTH = 30  # squad.cc: kMaxAnswerLength, in WordPiece tokens
COMPRESSIONS = ("ZLIB", "")  # TensorFlow's names: the app's files are ZLIB, "" reads plain TFRecords

_FLT_MAX = np.float32(np.finfo(np.float32).max)
_ARTICLES = frozenset({"a", "an", "the", "A", "An", "The"})  # squad_utils/common.h Normalize
_PUNCTUATION = frozenset(string.punctuation)  # C's ispunct in the "C" locale
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_SPACE = " \t\n\v\f\r"  # absl::ascii_isspace
_WORDPIECE = re.compile(r" ##|##")
_SPACE_RUN = re.compile(f"[{re.escape(_ASCII_SPACE)}]+")
_ZLIB_CHUNK = 1 << 16


@dataclass(frozen=True)
class SquadSample:
    """One record of the app's sample file (squad_utils/types.h ``SampleRecord``).

    ``span_tokens`` is the record's ``tokens``: [CLS], the query, [SEP], the window's document
    tokens and a final [SEP]. ``token_index_map`` (``token_to_orig_map``) and
    ``token_is_max_context`` hold one value per document token, so ``query_tokens_length`` (the
    app's count: [CLS], the query and its [SEP]) is what precedes them.
    """

    qas_id: str
    # The model's inputs, derived from span_tokens: left out of equality and repr.
    input_ids: np.ndarray = field(compare=False, repr=False)
    input_mask: np.ndarray = field(compare=False, repr=False)
    segment_ids: np.ndarray = field(compare=False, repr=False)
    span_tokens: tuple[str, ...]
    query_tokens_length: int
    token_is_max_context: tuple[bool, ...]
    token_index_map: tuple[int, ...]

    def __post_init__(self) -> None:
        # The candidate search indexes these by position: an inconsistent record would misplace them.
        if len(self.token_is_max_context) != len(self.token_index_map):
            raise ValueError(f"{len(self.token_is_max_context)} token_is_max_context values for "
                             f"{len(self.token_index_map)} token_to_orig_map values")
        expected = len(self.span_tokens) - len(self.token_index_map) - 1  # as types.h derives it
        if self.query_tokens_length != expected or expected < 0:
            raise ValueError(f"query_tokens_length {self.query_tokens_length}: {len(self.span_tokens)} tokens "
                             f"and {len(self.token_index_map)} mapped ones make it {expected}")


@dataclass(frozen=True)
class SquadGroundTruth:
    """One record of the app's ground-truth file (squad_utils/types.h ``GroundTruthRecord``)."""

    qas_id: str
    tokens: tuple[str, ...]  # per document word, its lower-cased basic tokens joined by spaces
    words: tuple[str, ...]  # the document's words as written
    answers: tuple[str, ...]


# --- reading the app's files ------------------------------------------------------------------


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (tensorflow/core/lib/hash/crc32c.h ``Mask``)."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _inflate(path: Path, data: bytes) -> bytes:
    """A ZLIB TFRecord file's framed records: one zlib stream, as TensorFlow's RecordWriter writes it."""
    inflater = zlib.decompressobj()
    out = []
    position = 0
    while position < len(data) and not inflater.eof:
        chunk = data[position:position + _ZLIB_CHUNK]
        before = inflater.copy()
        try:
            out.append(inflater.decompress(chunk))
        except zlib.error as exc:
            at = _zlib_error_offset(before, chunk, position)
            raise DatasetError(f"{path}: corrupt ZLIB data, found at byte {at}: {exc} "
                               "(the app's SQuAD files are ZLIB-compressed TFRecords)") from exc
        position += len(chunk)
    if not inflater.eof:
        raise DatasetError(f"{path}: the ZLIB stream is cut off at byte {len(data)}, the file's end: "
                           "the file is truncated or damaged")
    if inflater.unused_data:
        raise DatasetError(f"{path}: {len(inflater.unused_data)} stray bytes after the ZLIB stream, "
                           f"from byte {len(data) - len(inflater.unused_data)}")
    return b"".join(out)


def _zlib_error_offset(inflater: Any, chunk: bytes, position: int) -> int:
    """Where in ``chunk`` (at ``position`` in the file) zlib finds the damage: byte by byte from ``inflater``."""
    for index in range(len(chunk)):
        try:
            inflater.decompress(chunk[index:index + 1])
        except zlib.error:
            return position + index
    return position + len(chunk)


def _records(path: Path, compression: str) -> list[bytes]:
    """The payloads of a TFRecord file, CRCs checked (tensorflow/core/lib/io/record_reader.cc framing).

    A record is: length (uint64 LE), the length's masked CRC-32C, the data, the data's masked CRC-32C.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: one of {COMPRESSIONS}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    where = ""
    if compression == "ZLIB":
        data = _inflate(path, data)
        where = " of the inflated stream"
    records = []
    position = 0
    while position < len(data):
        index = len(records)
        if len(data) - position < 12:
            raise DatasetError(f"{path}: record {index}: truncated header at byte {position}{where}")
        header = data[position:position + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[position + 8:position + 12])
        if _masked_crc32c(header) != header_crc:
            raise DatasetError(f"{path}: record {index}: length CRC mismatch at byte {position}{where}")
        start = position + 12
        end = start + length
        if end + 4 > len(data):
            raise DatasetError(f"{path}: record {index}: truncated: {length} bytes from byte {start}{where} "
                               f"run past the end at byte {len(data)}")
        payload = data[start:end]
        (data_crc,) = struct.unpack("<I", data[end:end + 4])
        if _masked_crc32c(payload) != data_crc:
            raise DatasetError(f"{path}: record {index}: data CRC mismatch in bytes {start} to {end}{where}")
        records.append(payload)
        position = end + 4
    return records


def _examples(path: Path, compression: str) -> list[Any]:
    """The file's records as ``tf.train.Example`` messages."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    examples = []
    for index, payload in enumerate(_records(path, compression)):
        try:
            examples.append(example_pb2.Example.FromString(payload))
        except DecodeError as exc:
            raise DatasetError(f"{path}: record {index}: not a tf.train.Example: {exc}") from exc
    return examples


def _values(path: Path, index: int, example: Any, name: str, kind: str) -> list[Any]:
    """A feature's values, as types.h reads them with GetFeatureValues (which has no error of its own)."""
    features = example.features.feature
    if name not in features:
        raise DatasetError(f"{path}: record {index}: feature '{name}' missing")
    actual = features[name].WhichOneof("kind")
    if actual != kind:
        raise DatasetError(f"{path}: record {index}: feature '{name}' is {actual or 'empty'}, not {kind}")
    values = list(getattr(features[name], kind).value)
    if kind != "bytes_list":
        return values
    try:
        return [value.decode("utf-8") for value in values]
    except UnicodeDecodeError as exc:  # get_final_text converts them from UTF-8
        raise DatasetError(f"{path}: record {index}: feature '{name}' is not UTF-8: {exc}") from exc


def _qas_id(path: Path, index: int, example: Any) -> str:
    values = _values(path, index, example, "qas_id", "bytes_list")
    if len(values) != 1:
        raise DatasetError(f"{path}: record {index}: feature 'qas_id' has {len(values)} values, not 1")
    return values[0]


def read_samples(path: Path, *, compression: str = "ZLIB") -> list[SquadSample]:
    """The app's sample file (squad_eval*.tfrecord), in record order: a sample's index is its position."""
    samples = []
    for index, example in enumerate(_examples(path, compression)):
        inputs = {name: np.asarray(_values(path, index, example, name, "int64_list"), dtype=np.int64).astype(np.int32)
                  for name in ("input_ids", "input_mask", "segment_ids")}
        qas_id = _qas_id(path, index, example)
        tokens = tuple(_values(path, index, example, "tokens", "bytes_list"))
        index_map = tuple(int(v) for v in _values(path, index, example, "token_to_orig_map", "int64_list"))
        max_context = tuple(bool(v) for v in _values(path, index, example, "token_is_max_context", "int64_list"))
        try:
            samples.append(SquadSample(
                qas_id=qas_id, span_tokens=tokens, query_tokens_length=len(tokens) - len(index_map) - 1,
                token_is_max_context=max_context, token_index_map=index_map, **inputs))
        except ValueError as exc:
            raise DatasetError(f"{path}: record {index}: {exc}") from exc
    return samples


def read_ground_truth(path: Path, *, compression: str = "ZLIB") -> dict[str, SquadGroundTruth]:
    """The app's ground-truth file (squad_groundtruth.tfrecord), by question id."""
    truths: dict[str, SquadGroundTruth] = {}
    first: dict[str, int] = {}
    for index, example in enumerate(_examples(path, compression)):
        qas_id = _qas_id(path, index, example)
        if qas_id in first:
            raise DatasetError(f"{path}: record {index}: question {qas_id!r} again (first in record {first[qas_id]})")
        first[qas_id] = index
        truths[qas_id] = SquadGroundTruth(
            qas_id=qas_id, tokens=tuple(_values(path, index, example, "tokens", "bytes_list")),
            words=tuple(_values(path, index, example, "words", "bytes_list")),
            answers=tuple(_values(path, index, example, "answers", "bytes_list")))
    return truths


# --- the candidate search ---------------------------------------------------------------------


def top_k(values: np.ndarray, k: int = TOP_K) -> list[int]:
    """The k indexes of the largest values, largest first (as cpp/utils.h ``GetTopK``, offset 0).

    GetTopK sorts with std::sort, which leaves equal values in no stated order; here the lower
    index comes first. With fewer than k values the list is padded with index 0, as GetTopK's
    resize pads it.
    """
    order = np.argsort(-np.asarray(values, dtype=np.float32).ravel(), kind="stable")[:k]
    indexes = [int(i) for i in order]
    return indexes + [0] * (k - len(indexes))


def _candidate(sample: SquadSample, start: int, end: int) -> bool:
    """Whether (start, end) may be the answer: the skip rules of squad.cc ``ComputeAccuracy``."""
    query = sample.query_tokens_length
    if end < start or end - start + 1 > MAX_ANSWER_LENGTH:
        return False
    if start >= len(sample.span_tokens) or end >= len(sample.span_tokens):
        return False
    if start < query or end < query:  # inside [CLS] query [SEP]
        return False
    if end - query >= len(sample.token_index_map):  # the final [SEP]: the app reads past its vectors
        return False
    return sample.token_is_max_context[start - query]


def best_span(sample: SquadSample, start_logits: np.ndarray, end_logits: np.ndarray) -> tuple[int, int, float] | None:
    """The sample's best (start, end, start logit + end logit), or None where no span qualifies.

    As squad.cc ``ComputeAccuracy``: every pair of the top-K starts and top-K ends that passes the
    skip rules, scored in float32; a later pair must score strictly higher to replace an earlier
    one, and none that does not beat -FLT_MAX counts.
    """
    starts = np.asarray(start_logits, dtype=np.float32).ravel()
    ends = np.asarray(end_logits, dtype=np.float32).ravel()
    best: tuple[int, int, np.float32] | None = None
    best_score = -_FLT_MAX
    for start in top_k(starts):
        for end in top_k(ends):
            if not _candidate(sample, start, end):
                continue
            score = starts[start] + ends[end]
            if score > best_score:
                best, best_score = (start, end, score), score
    return None if best is None else (best[0], best[1], float(best[2]))


# --- the answer's text ------------------------------------------------------------------------


def prediction_text(sample: SquadSample, start: int, end: int) -> str:
    """The span's WordPiece tokens as text (squad.cc ``ComputeAccuracy``: pred_tokens).

    Tokens joined by spaces, " ##" and "##" removed (absl::StrReplaceAll, left to right), then
    absl::RemoveExtraAsciiWhitespace: ends stripped, a run of whitespace kept as its last character.
    """
    text = _WORDPIECE.sub("", " ".join(sample.span_tokens[start:end + 1]))
    return _SPACE_RUN.sub(lambda run: run.group()[-1], text.strip(_ASCII_SPACE))


def original_text(sample: SquadSample, truth: SquadGroundTruth, start: int, end: int) -> tuple[str, str] | None:
    """The document's (tokens, words) under the span, or None where the app skips the question.

    As squad.cc ``ComputeAccuracy``: the span's first and last document words by token_to_orig_map,
    each word's tokens and the words joined by spaces; a first word past the ground truth skips
    the question, and words past it further on are left out.
    """
    query = sample.query_tokens_length
    doc_start = sample.token_index_map[start - query]
    doc_end = sample.token_index_map[end - query]
    available = min(len(truth.tokens), len(truth.words))
    if not 0 <= doc_start < available:
        return None
    indexes = [doc_start, *range(doc_start + 1, min(doc_end, available - 1) + 1)]
    return " ".join(truth.tokens[i] for i in indexes), " ".join(truth.words[i] for i in indexes)


def _non_space_index(text: str, position: int) -> int:
    """The count of non-space characters before ``position``, or -1 where it is a space or past the end."""
    if not 0 <= position < len(text) or text[position] == " ":
        return -1
    return position - text.count(" ", 0, position)


def _position_of_non_space(text: str, count: int) -> int:
    """The position of the ``count``-th non-space character (from 0), or -1."""
    seen = 0
    for position, char in enumerate(text):
        if char == " ":
            continue
        if seen == count:
            return position
        seen += 1
    return -1


def get_final_text(pred_text: str, orig_tokens: str, orig_words: str) -> str:
    """The words the predicted tokens came from (squad_utils/common.h ``get_final_text``).

    The tokens are lower-cased and split at punctuation, the words are as written; without their
    spaces both are the same characters, so the prediction's place among ``orig_tokens``' non-space
    characters is its place in ``orig_words``. Where the prediction is not found, all of
    ``orig_words``. Positions count code points, as the app's UTF-32 strings do.
    """
    start = orig_tokens.find(pred_text)
    if start == -1:
        return orig_words
    ns_start = _non_space_index(orig_tokens, start)
    ns_end = _non_space_index(orig_tokens, start + len(pred_text) - 1)
    if ns_start == -1 or ns_end == -1:
        return orig_words
    orig_start = _position_of_non_space(orig_words, ns_start)
    orig_end = _position_of_non_space(orig_words, ns_end)
    if orig_start == -1 or orig_end == -1:
        return orig_words
    return orig_words[orig_start:orig_end + 1]


def predicted_answer(sample: SquadSample, truth: SquadGroundTruth, start: int, end: int) -> str | None:
    """The span's final answer text, or None where the app skips the question."""
    original = original_text(sample, truth, start, end)
    if original is None:
        return None
    return get_final_text(prediction_text(sample, start, end), *original)


# --- the score --------------------------------------------------------------------------------


def _normalize(text: str) -> str:
    """squad_utils/common.h ``Normalize``: articles (whole words), ASCII punctuation, ASCII case."""
    kept = " ".join(word for word in text.split(" ") if word not in _ARTICLES)
    return "".join(char for char in kept if char not in _PUNCTUATION).translate(_ASCII_LOWER)


def f1_score(answers: Sequence[str], prediction: str) -> float:
    """The best F1 of ``prediction`` over ``answers`` (squad_utils/common.h ``F1Score``), in float32.

    Words are split at single spaces and normalised one by one, so an article, a punctuation-only
    word or the gap of a double space becomes an empty word that counts as a match for another;
    the counts of precision and recall are the unnormalised words'. An answer with no word in
    common scores 0.
    """
    pred_words = prediction.split(" ")
    pred_counts = Counter(_normalize(word) for word in pred_words)
    best = np.float32(0.0)
    for answer in answers:
        answer_words = answer.split(" ")
        answer_counts = Counter(_normalize(word) for word in answer_words)
        common = sum(min(count, answer_counts[word]) for word, count in pred_counts.items())
        if common == 0:
            continue
        precision = np.float32(common) / np.float32(len(pred_words))
        recall = np.float32(common) / np.float32(len(answer_words))
        f1 = (np.float32(2.0) * precision * recall) / (precision + recall)
        best = max(f1, best)
    return float(best)


def squad_f1(samples: list[SquadSample], ground_truth: dict[str, SquadGroundTruth],
             logits: dict[int, tuple[np.ndarray, np.ndarray]]) -> float:
    """The app's SQuAD F1 as a fraction (squad.cc ``ComputeAccuracy``; the app shows it x100).

    ``logits`` maps a sample's index in ``samples`` to its (start, end) logits; a sample without
    them is skipped, as the app skips a sample it holds no prediction for. Per question, the best
    span over its samples in file order; its final text scored against the question's answers.
    """
    if not samples:
        raise DatasetError("no SQuAD samples to score")
    stray = sorted(set(logits) - set(range(len(samples))))
    if stray:
        raise InferenceError(f"logits for sample {stray[0]}, but there are {len(samples)} samples")
    by_question: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_question.setdefault(sample.qas_id, []).append(index)
    missing = [qas_id for qas_id in by_question if qas_id not in ground_truth]
    if missing:
        raise DatasetError(f"question {missing[0]!r} (of {len(missing)}) has samples but no ground truth")

    total = np.float32(0.0)
    for qas_id, indexes in by_question.items():
        best: tuple[int, int, int] | None = None  # (sample, start, end)
        best_score = -np.inf
        for index in indexes:
            if index not in logits:
                continue
            span = best_span(samples[index], *logits[index])
            if span is not None and span[2] > best_score:
                best, best_score = (index, span[0], span[1]), span[2]
        if best is None:
            continue  # the app reads out of bounds here; the question scores 0
        answer = predicted_answer(samples[best[0]], ground_truth[qas_id], best[1], best[2])
        if answer is None:
            continue  # as the app's `continue`: no score, but still counted below
        total += np.float32(f1_score(ground_truth[qas_id].answers, answer))
    # The app divides by every question of the sample file, those it skipped included.
    return float(total / np.float32(len(by_question)))


# --- serving the sample file to LoadGen, scoring what it logged ---------------------------------

INPUTS = ("input_ids", "input_mask", "segment_ids")  # squad.h GetData: the model's inputs, in order
# The model's outputs, in its order, as squad.cc ProcessOutput reads them: output 0 is the end.
END_OUTPUT, START_OUTPUT = 0, 1


class SquadSamples:
    """The sample file's windows as LoadGen's sample source: each the model's three inputs, int32,
    in the order the app feeds them (``INPUTS``)."""

    dtype = np.dtype(np.int32)

    def __init__(self, path: Path, samples: list[SquadSample]) -> None:
        if not samples:
            raise DatasetError(f"{path}: no samples")
        lengths = {len(s.input_ids) for s in samples}
        if len(lengths) != 1:
            raise DatasetError(f"{path}: windows of {sorted(lengths)} tokens: the model takes one length")
        self.path, self.samples = Path(path), samples
        self.total = len(samples)
        self._rows = np.stack([np.stack([getattr(s, name) for name in INPUTS]) for s in samples]).astype(np.int32)
        self.sample_shape = tuple(self._rows.shape[1:])
        self.labels = np.zeros(self.total, np.int32)  # scored from the logits, not from labels

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self._rows[np.asarray(indices, dtype=np.int64)]

    def describe(self) -> str:
        questions = len({s.qas_id for s in self.samples})
        return (f"{self.total} SQuAD v1.1 windows of {questions} questions, {self.sample_shape[1]} tokens, "
                f"from {self.path.name}")


def logged_logits(path: Path, sample_shape: tuple[int, ...]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(start, end) logits of every sample LoadGen's accuracy log answers: float32 rows of the
    model's outputs in its order (``LiteRTOutputsPredictor``); the last answer of a sample counts."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{path}: cannot read LoadGen's accuracy log: {exc}") from exc
    logits = {}
    for entry in entries:
        values = np.frombuffer(bytes.fromhex(entry["data"]), dtype="<f4")
        if values.size != int(np.prod(sample_shape)):
            raise InferenceError(f"{path}: sample {entry['qsl_idx']}: {values.size} floats logged, the model's "
                                 f"outputs are {list(sample_shape)}")
        rows = values.reshape(sample_shape)
        logits[int(entry["qsl_idx"])] = (rows[START_OUTPUT], rows[END_OUTPUT])
    return logits
