"""llama3.1-8b's accuracy: ROUGE of the generated summaries and their length, as MLCommons scores it.

The reference's evaluation.py (language/llama3.1-8b): each entry of mlperf_log_accuracy.json
counted once (the first per ``qsl_idx``), its ``data`` read as int32 token ids, decoded with
the model's tokenizer skipping special tokens, stripped, and split into sentences joined by
newlines (rougeLsum compares sentence by sentence); the same for the reference summaries.
ROUGE is Google's rouge_score with the Porter stemmer, per sample, then the mean × 100
rounded to 4 places; ``gen_len`` is the characters of the processed predictions, summed,
and ``gen_num`` their count. The checker reads those from accuracy.txt with its own patterns
(``'rouge1': '38.7792'``, ``'gen_len': 8167644``): the line here is the reference's dict.

One deviation: the reference splits sentences with nltk's ``sent_tokenize``, which loads
Punkt's trained English model from nltk_data at run time; benchpipe never downloads at run
time, so ``split_sentences`` runs Punkt without its trained model, with a short list of
abbreviations of its own (docs/inference.md, "llama3.1-8b: data and accuracy", measures
the difference). rouge1, rouge2 and rougeL do not depend on the split; rougeLsum and, by a
character where two sentences were not one space apart, gen_len may.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchpipe.benchmarks.llama.cnndm import CnnDailyMail, load_tokenizer
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT

if TYPE_CHECKING:
    import tokenizers
    from nltk.tokenize.punkt import PunktSentenceTokenizer

# What the reference's SUT writes into each response (np.int32 token ids).
TOKEN_DTYPE = np.dtype(np.int32)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# Abbreviations Punkt is told of, lowercased, without the final period: titles, months, places
# and company words that news text puts before a name or a number, where a period does not end
# the sentence. Punkt's trained English model knows these from its training corpus; untrained,
# it splits "Mr. Smith" and "the U.S. team" in two. Left out where that model splits too
# ("Gov. Chris Christie": it does not know "gov"), since the aim is its sentences, not better ones.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sen", "rep", "reps", "gen", "lt", "col", "maj", "adm", "st", "jr", "sr",
    "messrs", "jan", "feb", "aug", "sep", "sept", "oct", "nov", "dec", "tues", "wed", "fri",
    "u.s", "u.k", "u.n", "u.s.a", "u.s.s.r", "d.c", "n.y", "l.a", "n.j", "calif", "fla", "ariz", "colo", "conn",
    "mich", "minn", "tenn", "wis", "va", "pa", "ga", "inc", "corp", "co", "ltd", "bros", "vs", "ft", "ave",
    "p.m", "a.m", "ph.d",
})
# Words after which an abbreviation's period does end the sentence ("... in Cupertino, Calif.
# The phone ..."): the trained model decides that from how often a word is capitalized
# mid-sentence in its corpus, which is not at hand; pronouns and determiners almost never are.
SENTENCE_STARTERS = frozenset({
    "the", "he", "she", "it", "they", "we", "i", "his", "her", "their", "this", "these", "there", "but",
    "however", "meanwhile", "in", "if", "when", "while",
})


@dataclass(frozen=True)
class RougeAccuracy:
    """The reference's result: ROUGE F-measures (mean × 100, rounded to 4), the generated
    characters and the count of samples."""

    rouge1: float
    rouge2: float
    rougeL: float
    rougeLsum: float
    gen_len: int
    gen_num: int

    def reference_line(self) -> str:
        """The dict the reference's evaluation.py prints, ROUGE values as quoted text and the
        counts as bare integers, which is what the checker's patterns read."""
        scores = {name: str(getattr(self, name)) for name in ROUGE_TYPES}
        return repr({**scores, "gen_len": self.gen_len, "gen_num": self.gen_num})


def read_accuracy_log(path: Path) -> dict[int, np.ndarray]:
    """qsl_idx → generated token ids of LoadGen's accuracy log, in the log's order, the first
    entry of each sample kept (as the reference does: a later one is a repeat of it)."""
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InferenceError(f"{path}: missing: run the accuracy test first") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InferenceError(f"{path}: cannot read accuracy log: {exc}") from exc
    if not isinstance(entries, list):
        raise InferenceError(f"{path}: not a JSON list of LoadGen accuracy entries")
    generated: dict[int, np.ndarray] = {}
    for n, entry in enumerate(entries):
        try:
            index = entry["qsl_idx"]
            data = bytes.fromhex(entry["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(f"{path}: entry {n}: no qsl_idx and hex data ({type(exc).__name__}: {exc})") from exc
        if type(index) is not int or index < 0:
            raise InferenceError(f"{path}: entry {n}: qsl_idx {index!r} is not a sample index")
        if len(data) % TOKEN_DTYPE.itemsize:
            raise InferenceError(f"{path}: entry {n} (qsl_idx {index}): {len(data)} bytes of data, not whole "
                                 f"{TOKEN_DTYPE.itemsize}-byte int32 token ids")
        if index not in generated:
            generated[index] = np.frombuffer(data, TOKEN_DTYPE)
    if not generated:
        raise InferenceError(f"{path}: no samples in the accuracy log")
    return generated


def decode(tokenizer: "tokenizers.Tokenizer", generated: dict[int, np.ndarray], where: Path) -> list[str]:
    """Each sample's ids as text, special tokens skipped, as the reference's batch_decode does."""
    vocabulary = tokenizer.get_vocab_size(with_added_tokens=True)
    for index, ids in generated.items():
        outside = np.flatnonzero((ids < 0) | (ids >= vocabulary))
        if len(outside):
            raise InferenceError(f"{where}: qsl_idx {index}: token id {int(ids[outside[0]])} is outside the "
                                 f"tokenizer's vocabulary [0, {vocabulary})")
    return tokenizer.decode_batch([ids.tolist() for ids in generated.values()], skip_special_tokens=True)


@lru_cache(maxsize=1)
def _sentence_splitter() -> "PunktSentenceTokenizer":
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    parameters = PunktParameters()
    parameters.abbrev_types = set(ABBREVIATIONS)
    parameters.sent_starters = set(SENTENCE_STARTERS)
    return PunktSentenceTokenizer(parameters)


def split_sentences(text: str) -> list[str]:
    """Punkt's sentences of ``text``, from its rules, ABBREVIATIONS and SENTENCE_STARTERS, without a
    trained model."""
    return _sentence_splitter().tokenize(text)


def postprocess(texts: list[str] | tuple[str, ...]) -> list[str]:
    """The reference's postprocess_text: stripped, one sentence a line (rougeLsum's input)."""
    return ["\n".join(split_sentences(text.strip())) for text in texts]


def rouge_scores(predictions: list[str], targets: list[str]) -> dict[str, float]:
    """Mean ROUGE F-measure × 100, rounded to 4 places, of each prediction against its target,
    as evaluate's rouge computes it (use_stemmer=True, use_aggregator=False) and the
    reference then averages it. Both sides must be postprocessed already."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(targets) or not predictions:
        raise InferenceError(f"{len(predictions)} predictions for {len(targets)} targets: need one each, at least one")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    per_sample = {name: [] for name in ROUGE_TYPES}
    for prediction, target in zip(predictions, targets):
        scores = scorer.score(target, prediction)
        for name in ROUGE_TYPES:
            per_sample[name].append(scores[name].fmeasure)
    # np.mean, not sum / n: the reference's own summation, to the last bit of the rounding.
    return {name: round(float(np.mean(values)) * 100, 4) for name, values in per_sample.items()}


def rouge_accuracy(log: Path, dataset: CnnDailyMail, tokenizer: Path) -> RougeAccuracy:
    """The reference's accuracy of the LoadGen accuracy log ``log`` against ``dataset``'s summaries."""
    generated = read_accuracy_log(log)
    beyond = [i for i in generated if i >= len(dataset)]
    if beyond:
        raise InferenceError(f"{log}: qsl_idx {beyond[0]} is beyond the dataset's {len(dataset)} samples")
    predictions = postprocess(decode(load_tokenizer(tokenizer), generated, log))
    targets = postprocess([dataset.targets[i] for i in generated])
    scores = rouge_scores(predictions, targets)
    return RougeAccuracy(**scores, gen_len=sum(len(p) for p in predictions), gen_num=len(predictions))


def write_rouge_accuracy(result_dir: Path, dataset: CnnDailyMail, tokenizer: Path) -> RougeAccuracy:
    """accuracy.txt beside the accuracy log of ``result_dir``: the reference's dict, then the
    log's sha256 as ``hash=``, the line the checker looks for."""
    log = result_dir / ACCURACY_LOG
    result = rouge_accuracy(log, dataset, tokenizer)
    (result_dir / ACCURACY_TXT).write_text(f"{result.reference_line()}\nhash={sha256_file(log)}\n")
    return result
