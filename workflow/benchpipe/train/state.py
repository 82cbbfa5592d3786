"""Putting a model and its optimizer back as they were: what a warm-up inside init relies on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def state_kept(model) -> Iterator[None]:
    """Put back, after the block, every variable of ``model`` and of its optimizer.

    That is weights, batch-norm statistics, random-seed states, momenta and the step
    counter that drives the learning-rate schedule: what follows starts from exactly the
    state the block found.
    """
    optimizer = model.optimizer
    if not optimizer.built:
        # Its variables must exist now to be saved; the first training step would build
        # the same ones, at their initial values.
        optimizer.build(model.trainable_variables)
    variables = [*model.variables, *optimizer.variables]
    saved = [v.numpy() for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        model.reset_metrics()
