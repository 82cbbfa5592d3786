"""The one place benchpipe reaches into Snakemake's internals."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any


def sign_rule_functions(rules: Iterable[Any]) -> int:
    """Give each function of the rules (inputs, params, resources) the parameters Snakemake
    would find with inspect.signature, through its overwrite_function_params hook; returns how
    many it signed.

    Snakemake inspects the signature of an input, param or resource function on each of its
    calls: thousands of inspect.signature calls for a DAG of 1,000 jobs, a tenth of its dry run.
    """
    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params

    signed = 0
    for r in rules:
        items = [*r.input, *r.params]
        items += [getattr(resource, "_evaluator", None) for resource in r.resources.values()]
        for item in items:
            if inspect.isfunction(item) and not hasattr(item, FUNC_OVERWRITE_PARAMS_ATTR):
                overwrite_function_params(item, inspect.signature(item).parameters)
                signed += 1
    return signed
