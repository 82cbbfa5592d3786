"""llama2_70b_lora's hyperparameters: AdamW, a cosine schedule without warm-up, gradient clipping, LoRA.

Their reference values are the MLPerf reference's and its reference convergence points'
(mlperf-logging's ``rcp_checker/training_6.1.0/rcps_llama2_70b_lora.json``): learning rate 4e-4,
gradient norm 0.3, LoRA rank 16 and alpha 32, 1024 steps, global batch 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchpipe.contracts.benchmark import FixedInClosed

REFERENCE_MODEL = "llama2-70b"
# A model of Llama's architecture and tiny size, for tests and development runs: never a result
# for a round (the closed division refuses it).
STAND_IN_MODEL = "stand-in"
MODELS = (REFERENCE_MODEL, STAND_IN_MODEL)
REFERENCE_SEQUENCE_LENGTH = 8192
# The reference evaluates every 384 samples from sample 1536 on (the block and eval events of
# its logs, e.g. the published v5.1 results), on the whole validation set.
REFERENCE_EVAL_EVERY_SAMPLES = 384
REFERENCE_EVAL_START_SAMPLES = 1536
REFERENCE_LORA_DROPOUT = 0.1

_RULE_MODEL = ("training rules, closed division: the model must be the reference's (Llama-2-70B, "
               "from its checkpoint); a stand-in model may be submitted only in the open division")
_RULE_EVAL = ("training rules, closed division: evaluation follows the reference's cadence "
              f"(every {REFERENCE_EVAL_EVERY_SAMPLES} samples from sample {REFERENCE_EVAL_START_SAMPLES})")
CLOSED_FIXED: dict[str, FixedInClosed] = {
    "model": FixedInClosed((REFERENCE_MODEL,), _RULE_MODEL),
    "sequence_length": FixedInClosed(
        (REFERENCE_SEQUENCE_LENGTH,),
        "training rules, closed division: the reference's data, GovReport tokenized to 8192 tokens"),
    "lora_dropout": FixedInClosed((REFERENCE_LORA_DROPOUT,), "training rules, closed division: the reference's "
                                  "LoRA configuration (rank 16, alpha 32, dropout 0.1, on the attention projections)"),
    "eval_every_samples": FixedInClosed((REFERENCE_EVAL_EVERY_SAMPLES,), _RULE_EVAL),
    "eval_start_samples": FixedInClosed((REFERENCE_EVAL_START_SAMPLES,), _RULE_EVAL),
}


@dataclass(frozen=True)
class LoraHyperparameters:
    """The keys of ``training.hyperparameters.llama2_70b_lora``.

    ``global_batch_size`` samples make one optimizer step: ``micro_batch_size`` per replica per
    forward pass, accumulated over global / (micro × replicas) passes. ``max_steps`` optimizer
    steps end a run that has not reached the target; the cosine schedule decays over them.
    ``checkpoint``: the folder of the user's Llama-2-70B (Hugging Face layout) for ``model``
    llama2-70b; the stand-in starts from random weights and needs none, and its vocabulary is
    ``stand_in_vocabulary_size`` (Llama 2's, unless the data's tokens are fewer).
    """

    global_batch_size: int = 8
    micro_batch_size: int = 1
    base_learning_rate: float = 4e-4
    max_steps: int = 1024
    gradient_clip_norm: float = 0.3
    weight_decay: float = 1e-4
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = REFERENCE_LORA_DROPOUT
    sequence_length: int = REFERENCE_SEQUENCE_LENGTH
    eval_every_samples: int = REFERENCE_EVAL_EVERY_SAMPLES
    eval_start_samples: int = REFERENCE_EVAL_START_SAMPLES
    model: str = REFERENCE_MODEL
    checkpoint: str | None = None
    stand_in_vocabulary_size: int = 32_000

    def accumulation_steps(self, replicas: int = 1) -> int:
        """Forward passes per optimizer step on ``replicas`` replicas (0 where they do not divide the batch)."""
        per_pass = self.micro_batch_size * replicas
        return self.global_batch_size // per_pass if per_pass and self.global_batch_size % per_pass == 0 else 0

    def problems(self) -> list[tuple[str, str]]:
        """(key, why) for each value that the model, the optimizer or the loop cannot run."""
        found = []
        for key in ("global_batch_size", "micro_batch_size", "max_steps", "sequence_length", "eval_every_samples",
                    "stand_in_vocabulary_size"):
            if getattr(self, key) < 1:
                found.append((key, "must be at least 1"))
        if found:
            return found
        if not self.accumulation_steps():
            found.append(("micro_batch_size", f"must divide global_batch_size ({self.global_batch_size})"))
        for key in ("eval_every_samples", "eval_start_samples"):
            if getattr(self, key) % self.global_batch_size:
                found.append((key, f"must be a multiple of global_batch_size ({self.global_batch_size}): "
                                   "evaluations fall between optimizer steps"))
        if self.eval_start_samples < 0:
            found.append(("eval_start_samples", "must not be negative"))
        if not self.base_learning_rate > 0:
            found.append(("base_learning_rate", "must be positive"))
        if not self.gradient_clip_norm > 0:
            found.append(("gradient_clip_norm", "must be positive"))
        if self.weight_decay < 0:
            found.append(("weight_decay", "must not be negative"))
        if self.lora_rank < 1:
            found.append(("lora_rank", "must be at least 1: only the adapters train"))
        if not self.lora_alpha > 0:
            found.append(("lora_alpha", "must be positive"))
        if not 0 <= self.lora_dropout < 1:
            found.append(("lora_dropout", "must be in [0, 1)"))
        if self.model not in MODELS:
            found.append(("model", "must be " + " or ".join(f'"{m}"' for m in MODELS)))
        elif self.model == REFERENCE_MODEL and not self.checkpoint:
            found.append(("checkpoint", "must name the folder of your Llama-2-70B checkpoint (Hugging Face "
                                        "layout: config.json and *.safetensors): benchpipe never downloads weights"))
        elif self.model == STAND_IN_MODEL and self.checkpoint:
            found.append(("checkpoint", "must be null for the stand-in model, which starts from random weights"))
        return found

    def closed_fixed(self) -> dict[str, FixedInClosed]:
        return CLOSED_FIXED

    def mllog_items(self, steps_per_epoch: int = 0, replicas: int = 1) -> dict[str, Any]:
        """The hyperparameter events; ``steps_per_epoch`` is unused (the schedule counts optimizer steps)."""
        return {
            "global_batch_size": self.global_batch_size,
            "micro_batch_size": self.micro_batch_size,
            "gradient_accumulation_steps": self.accumulation_steps(replicas),
            "opt_base_learning_rate": self.base_learning_rate,
            "opt_learning_rate_training_steps": self.max_steps,
            "opt_learning_rate_warmup_factor": 0.0,
            "opt_gradient_clip_norm": self.gradient_clip_norm,
            "opt_adamw_weight_decay": self.weight_decay,
            "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha,
        }

    def mllog_sources(self) -> dict[str, str | None]:
        """The config key behind each MLLOG key of ``mllog_items``; None: benchpipe's own constant."""
        return {
            "global_batch_size": "global_batch_size",
            "micro_batch_size": "micro_batch_size",
            "gradient_accumulation_steps": "micro_batch_size",
            "opt_base_learning_rate": "base_learning_rate",
            "opt_learning_rate_training_steps": "max_steps",
            "opt_learning_rate_warmup_factor": None,
            "opt_gradient_clip_norm": "gradient_clip_norm",
            "opt_adamw_weight_decay": "weight_decay",
            "lora_rank": "lora_rank",
            "lora_alpha": "lora_alpha",
        }
