"""JSON Schema validation with defaults filled in, and errors that name the offending key."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import validators

from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.jsonfile import read_json
from benchpipe.contracts.paths import SCHEMAS_DIR


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    return read_json(SCHEMAS_DIR / name, ValidationError, missing="a schema of benchpipe's own: reinstall benchpipe")


def _with_defaults(cls: type) -> type:
    # jsonschema does not fill defaults itself; this is the extension its docs recommend.
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


def error_path(error: jsonschema.ValidationError) -> str:
    """'training.runs' or 'benchmarks[0]': the key a user must look at."""
    parts: list[str] = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    if error.validator == "required":
        # The missing key is named only in the message; point at it directly.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(f".{missing}" if parts else missing)
    return "".join(parts) or "<top level>"


def validate(instance: Any, schema_name: str, *, what: str, fill_defaults: bool = False) -> None:
    """Validate ``instance`` in place; raise ValidationError naming ``what`` and the key."""
    schema = load_schema(schema_name)
    cls = _DefaultingValidator if fill_defaults else jsonschema.Draft202012Validator
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(instance))
    if error is not None:
        raise ValidationError(f"{what}: key '{error_path(error)}': {error.message}")
