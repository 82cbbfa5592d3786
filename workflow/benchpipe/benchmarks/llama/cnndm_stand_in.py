"""A generated stand-in for llama3.1-8b's CNN/DailyMail, in the reference's cnn_eval.json form,
with its own tokenizer.json, for tests and development runs of a tiny Llama.

Each "article" opens with one of a few fixed topic sentences and goes on with sentences of
random words; its "summary" is the topic sentence again. The summary is thus learnable
(recognise the topic from the article's first word, then say its sentence) while the rest
is noise, so a tiny model can reach a ROUGE near 100 on it. The vocabulary is a few dozen
words with a word-level tokenizer in Hugging Face's format (``tokenizers``' ``WordLevel``
model, whitespace pre-tokenizer, Llama 3's begin/end-of-text special tokens), so that
accuracy decodes the stand-in's ids through the same code path as a real checkpoint's.
Texts are tokens joined by single spaces, so decoding gives back exactly the text.
It stands in for the data's form, not its content: a score on it says nothing of Llama 3.1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchpipe.benchmarks.llama.cnndm import EVAL_FILE, TOKENIZER_FILE
from benchpipe.contracts.atomic import atomic_file

BEGIN, END, UNKNOWN = "<|begin_of_text|>", "<|end_of_text|>", "<unk>"
SPECIAL = (BEGIN, END, UNKNOWN)
# The instruction template around the article, as the reference's prompt has one.
INSTRUCTION, ANSWER, COLON, PERIOD = "summarize", "summary", ":", "."
RESERVED = (*SPECIAL, INSTRUCTION, ANSWER, COLON, PERIOD)
WORDS = (
    "river", "town", "storm", "police", "court", "team", "market", "school", "house", "city", "water", "fire",
    "road", "child", "doctor", "bank", "game", "night", "leader", "price", "film", "plan", "crowd", "rain",
    "ship", "train", "farm", "bridge", "judge", "army", "party", "coach", "field", "power", "island", "museum",
    "village", "winter", "summer", "border", "harbor", "forest", "station", "hospital", "budget", "report",
    "vote", "strike", "trial", "flight", "company", "driver", "garden", "castle", "mountain", "letter", "music",
)


@dataclass(frozen=True)
class StandInShape:
    """Sizes of the generated data. The defaults give prompts of 24 to 36 tokens (begin-of-text
    included) and summaries of 7, over a vocabulary of 64 ids."""

    records: int = 64
    topics: int = 8
    vocabulary: int = 64
    topic_words: int = 6  # words of a topic sentence, before its period: the summary
    filler_words: int = 5  # words of each noise sentence
    min_filler_sentences: int = 2
    max_filler_sentences: int = 4

    def words(self) -> tuple[str, ...]:
        return WORDS[:self.vocabulary - len(RESERVED)]

    def check(self) -> None:
        words = self.vocabulary - len(RESERVED)
        if not 0 < words <= len(WORDS):
            raise ValueError(f"vocabulary {self.vocabulary}: the stand-in has {len(RESERVED)} reserved tokens "
                             f"and at most {len(WORDS)} words, so from {len(RESERVED) + 1} to "
                             f"{len(RESERVED) + len(WORDS)}")
        # Each topic sentence opens with a word of its own, and repeats none of its words.
        if words < max(self.topics, self.topic_words):
            raise ValueError(f"vocabulary {self.vocabulary}: {words} words cannot give {self.topics} topics "
                             f"distinct first words and {self.topic_words} distinct words a topic sentence")
        if self.records < 1 or self.topics < 1 or self.topic_words < 1 or self.filler_words < 1:
            raise ValueError("records, topics, topic_words and filler_words must be at least 1")
        if not 0 <= self.min_filler_sentences <= self.max_filler_sentences:
            raise ValueError(f"filler sentences: {self.min_filler_sentences} to {self.max_filler_sentences} "
                             "is not a range of counts")


def stand_in_vocabulary(shape: StandInShape) -> dict[str, int]:
    """Token to id: the special tokens first, as ids 0, 1, 2, then the template, then the words."""
    return {token: i for i, token in enumerate((*RESERVED, *shape.words()))}


def stand_in_tokenizer(shape: StandInShape):
    """A ``tokenizers.Tokenizer`` that encodes a prompt as Llama 3's does: begin-of-text first."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors

    vocabulary = stand_in_vocabulary(shape)
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Special, so that decoding with skip_special_tokens drops them as it drops Llama 3's.
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL])
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BEGIN} $A", special_tokens=[(BEGIN, 0)])
    return tokenizer


def _sentence(words: list[str]) -> str:
    return " ".join([*words, PERIOD])


def stand_in_records(shape: StandInShape, seed: int) -> list[dict]:
    """The records of cnn_eval.json: input, tok_input, output; the same arguments give the same records."""
    shape.check()
    words = shape.words()
    topics_rng = np.random.default_rng([seed, 0])
    firsts = topics_rng.choice(len(words), shape.topics, replace=False)
    topics = []
    for first in firsts:
        rest = topics_rng.choice(np.setdiff1d(np.arange(len(words)), [first]), shape.topic_words - 1, replace=False)
        topics.append(_sentence([words[i] for i in (first, *rest)]))
    tokenizer = stand_in_tokenizer(shape)
    rng = np.random.default_rng([seed, 1])
    records = []
    for _ in range(shape.records):
        topic = topics[int(rng.integers(shape.topics))]
        fillers = [_sentence([words[i] for i in rng.integers(len(words), size=shape.filler_words)])
                   for _ in range(int(rng.integers(shape.min_filler_sentences, shape.max_filler_sentences + 1)))]
        prompt = " ".join([INSTRUCTION, COLON, topic, *fillers, ANSWER, COLON])
        records.append({"input": prompt, "tok_input": tokenizer.encode(prompt).ids, "output": topic})
    return records


def write_stand_in(out_dir: Path, *, shape: StandInShape = StandInShape(), seed: int = 0) -> dict[str, Path]:
    """cnn_eval.json and tokenizer.json under ``out_dir``; the same arguments give the same bytes."""
    records = stand_in_records(shape, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    # One record a line: a reader of the file sees records, not a column of ids a number a line.
    data = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
    for name, text in ((EVAL_FILE, data), (TOKENIZER_FILE, stand_in_tokenizer(shape).to_str(pretty=True) + "\n")):
        with atomic_file(out_dir / name, "w") as f:
            f.write(text)
        written[name] = out_dir / name
    return written
