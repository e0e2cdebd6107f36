"""Values and placeholders: parameter values as the KFP V2 driver and launcher convert them.

Placeholders are filled like ``launcher_v2.go`` ``getPlaceholders``; runtime and
input parameters are checked like the driver's ``handleParamTypeValidationAndConversion``;
the deprecated ``pipeline_spec.Value`` (intValue/doubleValue/stringValue) is read
and written for components declared with the old types.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import ReplayError, UnsupportedSpec


def legacy_to_python(value: Mapping[str, Any]) -> Any:
    """A deprecated ``pipeline_spec.Value`` (intValue/doubleValue/stringValue) as a plain value."""
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "stringValue" in value:
        return value["stringValue"]
    raise UnsupportedSpec(f"unknown deprecated Value {value}")


def python_to_legacy(value: Any, primitive: str | None = None) -> dict[str, Any]:
    if primitive == "STRING" or isinstance(value, str):
        return {"stringValue": value if isinstance(value, str) else json.dumps(value)}
    if isinstance(value, bool):
        raise UnsupportedSpec("the deprecated Value has no boolean")
    if primitive == "INT" or (primitive is None and float(value).is_integer()):
        return {"intValue": str(int(value))}
    if primitive in ("DOUBLE", None):
        return {"doubleValue": float(value)}
    raise UnsupportedSpec(f"cannot hold {value!r} in a deprecated Value of type {primitive}")


def format_number(number: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: shortest exact form, no exponent (3.0 -> "3")."""
    text = format(decimal.Decimal(repr(float(number))).normalize(), "f")
    return text


def placeholder_text(value: Any) -> str:
    """How ``getPlaceholders`` renders an input parameter value: numbers like Go, the rest as compact JSON."""
    if value is None:
        raise ReplayError("a null parameter value cannot fill a placeholder")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return json.dumps(value, separators=(",", ":"))  # true/false, lists and structs


def parameter_text_to_value(text: str, parameter_type: str) -> Any:
    """``metadata.TextToPbValue``: an output parameter file's text as a value."""
    if parameter_type == "STRING":
        return text
    if parameter_type in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
        return int(text) if parameter_type == "NUMBER_INTEGER" else float(text)
    if parameter_type == "BOOLEAN":
        return {"true": True, "false": False}[text.strip()]
    if parameter_type in ("LIST", "STRUCT"):
        return json.loads(text)
    raise UnsupportedSpec(f"output parameter type {parameter_type}")


def check_parameter_type(where: str, value: Any, parameter_type: str | None) -> Any:
    """The driver's ``handleParamTypeValidationAndConversion``."""
    if parameter_type is None:
        return value
    if parameter_type == "STRING":
        return value if isinstance(value, str) else json.dumps(value)
    ok = {
        "NUMBER_INTEGER": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "NUMBER_DOUBLE": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "BOOLEAN": lambda v: isinstance(v, bool),
        "LIST": lambda v: isinstance(v, list),
        "STRUCT": lambda v: isinstance(v, dict),
    }.get(parameter_type)
    if ok is None:
        raise UnsupportedSpec(f"{where}: parameter type {parameter_type}")
    if not ok(value):
        raise ReplayError(f"{where}: type mismatch: expect {parameter_type}, got {value!r}")
    return value


PLACEHOLDER_RE = re.compile(r"\{\{\$[^}]*\}\}")
FILTER_INPUT_RE = re.compile(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}")
