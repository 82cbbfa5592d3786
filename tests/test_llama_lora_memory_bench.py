"""bench/llama_lora_memory.py at its smoke sizes: it runs, and the counts it prints are the exact
ones for the shape it built (its memory figures are only checked to be there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "llama_lora_memory.py"


@pytest.mark.bench
@pytest.mark.slow
def test_the_lora_memory_bench_counts_what_each_variant_trains(cli_env, tmp_path):
    layers, hidden, kv_width, intermediate, vocab, rank = 2, 32, 16, 64, 64, 16  # --smoke's sizes, 2 layers
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--layers", str(layers), "--threads", "1"],
                          cwd=SCRIPT.parents[1], env=dict(cli_env, TMPDIR=str(tmp_path)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    figures = json.loads(proc.stdout.strip().splitlines()[-1])

    # A and B on query and output (hidden -> hidden) and on key and value (hidden -> kv_width).
    lora = layers * rank * (2 * (hidden + hidden) + 2 * (hidden + kv_width))
    full = (2 * vocab * hidden + hidden  # embedding, lm_head, final norm
            + layers * (2 * hidden + 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * intermediate))
    assert (figures["lora"]["trainable"], figures["full"]["trainable"]) == (lora, full)
    assert figures["lora"]["parameters"] == full + lora
    # AdamW: two float32 moments per trainable weight, and the same few scalars in both.
    overhead = figures["lora"]["optimizer_bytes"] - 8 * lora
    assert figures["full"]["optimizer_bytes"] - 8 * full == overhead and 0 <= overhead < 64
    assert all(figures[v]["peak_mb"] > figures[v]["peak_above_import_mb"] > 0 for v in ("lora", "full"))
    assert "| Peak RSS, MB (median) |" in proc.stdout
