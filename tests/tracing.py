"""When TensorFlow traces a model's step: Python runs inside ``call`` only while it traces."""

from __future__ import annotations

import time


def record_traces(model, traced_at_ms: list[float]):
    """``model``, its ``call`` wrapped to append the wall time (ms, as MLLOG's) of each trace."""
    call = model.call

    def counted(*args, **kwargs):
        traced_at_ms.append(time.time() * 1000)
        return call(*args, **kwargs)

    model.call = counted
    return model
