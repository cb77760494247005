"""JSON documents checked against a schema, with one-line errors.

Each JSON format zcfuzz reads has one JSON Schema (Draft 2020-12) beside the code that owns it:
programs (`vm.program.PROGRAM_SCHEMA`), findings (`fuzz.findings.FINDING_SCHEMA`) and kernel
info (`vm.kbuild.KERNEL_INFO_SCHEMA`). A schema says a document's shape and JSON types; what a
format's own code checks beyond that (a program's names, kinds, ranges and each op's fields)
stays there. Whatever a reader is given, it returns a document of that shape or raises a
`UserError` of one line: what was read, where in it, and what is wrong, e.g.
`program: fds[0].kind: expected a string, got ["tcp4"]`.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from zcfuzz.vm.errors import UserError

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SHOWN = 60  # characters of a wrong value a message quotes

# JSON Schema counts 1.0 as an integer and Python's readers do not: no integer is a float here.
_Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))
_validators: dict[int, tuple[dict, Any]] = {}
_TYPE_NAMES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def typed(**types: str | list[str]) -> dict:
    """`properties` of a schema whose fields say only their JSON type: typed(name="string")."""
    return {name: {"type": json_type} for name, json_type in types.items()}


def _validator(schema: dict):
    """One validator per schema, made (and the schema itself checked) on first use."""
    known = _validators.get(id(schema))
    if known is None or known[0] is not schema:
        _Validator.check_schema(schema)
        known = _validators[id(schema)] = (schema, _Validator(schema))
    return known[1]


def one_line(text: str) -> str:
    return " ".join(text.splitlines())


def shown(value: Any) -> str:
    """A value as JSON, cut to SHOWN characters."""
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def where(path) -> str:
    """A JSON path as `fds[0].kind`; the document itself is the "top level"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _WORD.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "top level"


def problem(error: ValidationError) -> str:
    """What is wrong, in the words the readers' own checks use where they say the same thing."""
    if error.validator == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"expected {' or '.join(_TYPE_NAMES[t] for t in types)}, got {shown(error.instance)}"
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"missing field {missing[0]!r}"
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = list(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        return f"unknown field {unknown[0]!r} (known: {', '.join(known) or 'none'})"
    text = one_line(error.message)
    return text if len(text) <= 3 * SHOWN else text[:3 * SHOWN - 3] + "..."


def check(doc: Any, schema: dict, what: str) -> None:
    """`doc` matches `schema`, or a one-line UserError naming `what`, the place and the problem."""
    try:
        error = best_match(_validator(schema).iter_errors(doc))
    except RecursionError:
        raise UserError(one_line(f"{what}: nested too deeply")) from None
    if error is not None:
        raise UserError(one_line(f"{what}: {where(error.absolute_path)}: {problem(error)}"))


def parse(text: str | bytes, what: str, schema: dict | None = None) -> Any:
    """The JSON document in `text`, checked against `schema` when there is one."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(one_line(f"{what}: not JSON: {err.msg} at line {err.lineno} column {err.colno}")) from None
    except UnicodeDecodeError as err:
        raise UserError(one_line(f"{what}: not JSON: not UTF-8 text ({err.reason} at byte {err.start})")) from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise UserError(one_line(f"{what}: not JSON zcfuzz reads: {err}")) from None
    except RecursionError:
        raise UserError(one_line(f"{what}: not JSON zcfuzz reads: nested too deeply")) from None
    if schema is not None:
        check(doc, schema, what)
    return doc


def read(path: str | Path, what: str, schema: dict | None = None) -> Any:
    """The JSON document in file `path`, `what` saying what it holds (for a file that cannot be
    read); the errors of `parse` name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(one_line(f"cannot read {what} {path}: {err.strerror or err}")) from None
    return parse(data, str(path), schema)


@contextmanager
def within(what: str):
    """A UserError raised inside names `what` first: the file a document was read from."""
    try:
        yield
    except UserError as err:
        raise UserError(one_line(f"{what}: {err}")) from None
