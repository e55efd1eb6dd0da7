"""The config's schema (semcore/config.schema.yaml): the one source of every default, and readable errors.

The schema checks each key alone: `validate` names the key, what it allows and the value given, for every
error at once (Snakemake's `validate` prints the whole schema with each error and stops at the first; it
runs after this one, to fill in the defaults). The settings dataclasses take their field defaults from
the schema (`default`), so that UNetConfig() in Python is the workflow's default model.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from dataclasses import field
from pathlib import Path

import jsonschema
import yaml

SCHEMA = Path(__file__).parent.parent / "config.schema.yaml"


@functools.cache
def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def schema_of(key: str) -> dict:
    """The schema of a dotted config key: 'train.lr', 'sample.matching.tol'."""
    node = load_schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node


def section_defaults(key: str) -> dict:
    """The defaults of a config section ('sample'), nested, as Snakemake fills them in from the schema."""
    def defaults(node):
        if "properties" not in node:
            return node.get("default")
        return {name: defaults(sub) for name, sub in node["properties"].items() if "default" in sub}

    return defaults(schema_of(key))


def default(key: str):
    """A dataclass field whose default is the schema's default of a config key ('train.lr')."""
    value = schema_of(key)["default"]
    if isinstance(value, (list, dict)):  # each instance gets its own copy, as dataclasses require
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=value)


class ConfigError(ValueError):
    pass


def suggestion(word, choices) -> str:
    """' (did you mean 'x'?)' for the choice closest to a misspelt word; '' if none is close."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [choice for choice in choices if isinstance(choice, str)], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


BOUNDS = (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤"))
TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
              "array": "a list", "object": "a mapping", "null": "null"}


def validate(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Raise one ConfigError listing every way the config breaks the schema. Run before Snakemake's
    validate, which fills the defaults and then finds nothing."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    # dict.fromkeys: each missing required key's error reports every missing key
    lines = dict.fromkeys(line for error in validator.iter_errors(config) for line in error_lines(error))
    if lines:
        raise ConfigError(f"{len(lines)} invalid setting(s) in the config ({schema_path} documents each key):\n"
                          + "\n".join(f"  {line}" for line in lines))


def error_lines(error) -> list[str]:
    """A jsonschema error as lines `key: what is wrong`."""
    key = dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        return [f"{key or 'config'}: unknown key {name!r}"
                + (suggestion(name, allowed) or f" (allowed: {', '.join(allowed)})")
                for name in error.instance if name not in allowed]
    if error.validator == "required":
        return [f"{dotted([*error.absolute_path, name])}: missing (required)"
                for name in error.validator_value if name not in error.instance]
    if error.validator in ("oneOf", "anyOf"):
        # The branches whose type the value has (a mapping for sample.unconditional) tell what is wrong
        # inside it; a value of no branch's type is told every branch.
        misfits = {e.relative_schema_path[0] for e in error.context
                   if not e.relative_path and e.validator in ("type", "enum")}
        fitting = [e for e in error.context if e.relative_schema_path[0] not in misfits]
        if fitting:
            return [line for e in fitting for line in error_lines(e)]
    return [f"{key or 'config'}: must be {describe(error.schema)}, got {shown(error.instance)}{hint(error)}"]


def dotted(path) -> str:
    """['cluster', 'ks', 1] → 'cluster.ks[1]'."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def shown(value) -> str:
    """A value as YAML spells it (null, true), cut short."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(schema: dict) -> str:
    """What a schema allows, in words: 'an integer ≥ 2 or null', 'one of layer, batch, none'."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(map(describe, schema.get("oneOf") or schema["anyOf"]))
    types = schema.get("type", [])
    return " or ".join(describe_type(name, schema) for name in ([types] if isinstance(types, str) else types))


def describe_type(name: str, schema: dict) -> str:
    """describe for one of the schema's types."""
    text = TYPE_NAMES[name]
    if name in ("integer", "number"):
        bounds = [f"{sign} {schema[bound]}" for bound, sign in BOUNDS if bound in schema]
        text += " " + " and ".join(bounds) if bounds else ""
    if name == "string":
        text = "a non-empty string" if schema.get("minLength") else text
        text += f" matching {schema['pattern']}" if "pattern" in schema else ""
    if name == "array":
        least = schema.get("minItems")
        details = [f"at least {least} item{'s' * (least > 1)}"] if least else []
        details += ["no repeats"] if schema.get("uniqueItems") else []
        details += [f"each {describe(schema['items'])}"] if "items" in schema else []
        text += f" ({'; '.join(details)})" if details else ""
    return text


def hint(error) -> str:
    """A likely cause, where one is known."""
    if error.validator in ("enum", "oneOf", "anyOf"):
        schemas = [error.schema, *error.schema.get("oneOf", error.schema.get("anyOf", []))]
        return suggestion(error.instance, [value for schema in schemas for value in schema.get("enum", [])])
    if error.validator == "pattern" and "description" in error.schema:
        return f" ({error.schema['description']})"
    if (error.validator == "type" and isinstance(error.instance, str)
            and re.fullmatch(r"[-+]?[0-9.]+e[-+]?[0-9]+", error.instance, re.IGNORECASE)):
        return " (YAML reads this as text: write a decimal point and a signed exponent, 1.0e-3 or 1.0e+3)"
    return ""
