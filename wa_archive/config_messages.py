"""Pydantic's validation errors of the settings, said in our words: the variable, what is wrong with
its value and what a valid one looks like; a secret's value is never repeated."""

from __future__ import annotations

from typing import Any, get_args

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

# Settings whose value may carry a password (a database URL's user:password@) besides the SecretStr ones.
_URLS_WITH_CREDENTIALS = frozenset({"database_url", "migrate_database_url"})

_NUMBER_ERRORS = frozenset({"int_parsing", "int_type", "int_from_float", "float_parsing", "float_type",
                            "greater_than", "greater_than_equal", "less_than", "less_than_equal",
                            "finite_number"})


def is_secret(name: str, field: FieldInfo | None) -> bool:
    """Whether the setting's value must never appear in a message."""
    if name in _URLS_WITH_CREDENTIALS:
        return True
    annotation = field.annotation if field is not None else None
    return annotation is SecretStr or SecretStr in get_args(annotation)


def describe_error(variable: str, name: str, field: FieldInfo | None, error: ErrorDetails) -> str:
    """One sentence for one validation error of setting `name` (environment variable `variable`)."""
    kind = error["type"]
    given = "" if is_secret(name, field) else f", not {_shown(error.get('input'))}"
    if kind == "value_error":
        # Our own validators' messages (config.py), already in our words.
        return f"{variable}: {error.get('ctx', {}).get('error', error['msg'])}"
    if kind in _NUMBER_ERRORS:
        return f"{variable}: must be {_number(field)}{given}{_default(field)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{variable}: must be true or false{given}"
    return f"{variable}: is not a valid value for this setting{given}{_default(field)}"


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _default(field: FieldInfo | None) -> str:
    if field is None or field.default is None or isinstance(field.default, SecretStr):
        return ""
    return f" (the default is {field.default})"


def _number(field: FieldInfo | None) -> str:
    """'a whole number from 0 to 65535', 'a number greater than 0', … from the field's own bounds."""
    annotation = field.annotation if field is not None else None
    whole = annotation is int or int in get_args(annotation)
    noun = "a whole number" if whole else "a number"
    bounds: dict[str, Any] = {}
    for item in field.metadata if field is not None else ():
        for attribute in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, attribute.capitalize())):
                bounds[attribute] = getattr(item, attribute)
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {bounds['ge']} to {bounds['le']}"
    said = []
    if "ge" in bounds:
        said.append(f"of at least {bounds['ge']}")
    if "gt" in bounds:
        said.append(f"greater than {bounds['gt']}")
    if "le" in bounds:
        said.append(f"of at most {bounds['le']}")
    if "lt" in bounds:
        said.append(f"less than {bounds['lt']}")
    return " ".join([noun, " and ".join(said)]) if said else noun
