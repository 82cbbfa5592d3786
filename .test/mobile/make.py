#!/usr/bin/env python3
"""Writes the reduced suite's supplied Mobile model and its data (.test/config/config.yaml,
mobile.supplied.mobilebert_tiny): a tiny .tflite of MobileBERT's inputs and outputs, and two
SQuAD questions in the app's two ZLIB TFRecord files under tasks.pbtxt's names. The model
scores F1 0.9 on them (tests/test_mobile_language.py says why). Their bytes are committed, so
that the suite runs without TensorFlow's converter: after running this again, put the model's
new sha256 in the config.

    .venv/bin/python .test/mobile/make.py
"""

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from test_mobile_language import tiny_mobilebert, write_squad_files  # noqa: E402

if __name__ == "__main__":
    (HERE / "squad").mkdir(exist_ok=True)
    write_squad_files(HERE / "squad")
    model = tiny_mobilebert(HERE / "mobilebert_tiny.tflite")
    print(f"{model}: sha256 {hashlib.sha256(model.read_bytes()).hexdigest()}")
