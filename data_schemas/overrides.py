"""``--set dotted.key=value`` overrides of config mappings, shared by the run config and the trainers.

Values are read as YAML, so numbers, booleans, lists and null work (``sampling.n=4``, ``lora=null``).
Numeric keys index into lists (``sources.0.limit=10``)."""

from __future__ import annotations

from typing import Any

import yaml


class OverrideError(ValueError):
    """An override that cannot apply; the message quotes it."""


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise OverrideError(f"--set {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    return key, value


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[:depth + 1])
        if isinstance(node, list):
            try:
                index = int(key)
                if last:
                    node[index] = value
                    return
                node = node[index]
            except (ValueError, IndexError):
                raise OverrideError(f"--set {dotted}: {where} is not a valid list index") from None
            continue
        if last:
            node[key] = value
            return
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        if not isinstance(nxt, (dict, list)):
            raise OverrideError(f"--set {dotted}: {where} is not a section")
        node = nxt


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    for text in overrides:
        set_dotted(data, *parse_override(text))
    return data
