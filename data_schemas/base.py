"""The machinery every record shares: Arrow schemas derived from dataclass type hints,
validation of untrusted dicts into records, content-hash ids.

A record is a frozen dataclass whose fields use only these types:
``str``, ``int``, ``float``, ``bool``, ``X | None`` of those, ``tuple[X, ...]`` of a scalar or of
another record, a nested record, and ``Json`` (any JSON value, stored as a JSON string column).
``Messages`` (a tuple of role/content pairs) is a record too.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from functools import cache
from typing import Any, ClassVar, TypeVar

import pyarrow as pa


class RecordError(ValueError):
    """An input row that cannot become a record. ``field`` names the offending field."""

    def __init__(self, record: str, field: str, reason: str):
        self.record = record
        self.field = field
        self.reason = reason
        super().__init__(f"{record}.{field}: {reason}")


class Json:
    """Marker type: any JSON-serialisable value, stored in Arrow as a JSON string."""


def content_id(*parts: Any, length: int = 16) -> str:
    """Stable content hash used for every id, so a rerun produces the same ids."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def derive_seed(base_seed: int, *parts: Any) -> int:
    """The one seed scheme: a 31-bit seed from the run's seed and what it is for (a purpose name,
    ids, a round), so reruns draw the same samples and different uses never share a stream."""
    return int(content_id("seed", base_seed, *parts), 16) % (2**31 - 1)


R = TypeVar("R", bound="Record")

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _arrow_type(tp: Any) -> pa.DataType:
    tp, _ = _unwrap_optional(tp)
    if tp in _SCALARS:
        return _SCALARS[tp]
    if tp is Json:
        return pa.string()
    if dataclasses.is_dataclass(tp):
        return pa.struct([pa.field(n, _arrow_type(t), nullable=o) for n, t, o in _fields(tp)])
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return pa.list_(_arrow_type(inner))
    raise TypeError(f"unsupported record field type {tp!r}")


@cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    hints = typing.get_type_hints(cls, include_extras=False)
    out = []
    for f in dataclasses.fields(cls):
        _, optional = _unwrap_optional(hints[f.name])
        out.append((f.name, hints[f.name], optional))
    return tuple(out)


def _to_plain(value: Any, tp: Any) -> Any:
    base, _ = _unwrap_optional(tp)
    if value is None:
        return None
    if base is Json:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if dataclasses.is_dataclass(base):
        return {n: _to_plain(getattr(value, n), t) for n, t, _ in _fields(base)}
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)[0]
        return [_to_plain(v, inner) for v in value]
    return value


def _from_plain(record: str, name: str, value: Any, tp: Any, optional: bool) -> Any:
    base, is_opt = _unwrap_optional(tp)
    optional = optional or is_opt
    if value is None:
        if optional:
            return None
        raise RecordError(record, name, "missing (null) but required")
    if base is Json:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise RecordError(record, name, f"expected an object, got {type(value).__name__}")
        return base.from_dict(value)  # type: ignore[attr-defined]
    if typing.get_origin(base) is tuple:
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise RecordError(record, name, f"expected a list, got {type(value).__name__}")
        inner = typing.get_args(base)[0]
        return tuple(_from_plain(record, f"{name}[{i}]", v, inner, False) for i, v in enumerate(value))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is bool and not isinstance(value, bool):
        raise RecordError(record, name, f"expected a bool, got {type(value).__name__}")
    if base is int and isinstance(value, bool):
        raise RecordError(record, name, "expected an int, got bool")
    if not isinstance(value, base):
        raise RecordError(record, name, f"expected {base.__name__}, got {type(value).__name__}")
    if base is str and "\x00" in value:
        raise RecordError(record, name, "contains a NUL byte")
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every record: conversion to and from plain rows, and its Arrow schema."""

    # Fields that must be non-empty strings; checked by ``validate``.
    REQUIRED_TEXT: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # Enum members (Stage.READ, ErrorKind.NO_CODE, ...) are stored as their plain values, so a
        # record compares, hashes and serializes the same however its producer spelled the value.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                object.__setattr__(self, f.name, value.value)

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        return _schema(cls)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(n for n, _, _ in _fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """A plain row (Json fields as JSON strings), ready for Arrow or JSON lines."""
        return {n: _to_plain(getattr(self, n), t) for n, t, _ in _fields(type(self))}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> typing.Self:
        """Validate an untrusted row. Missing optional fields and fields with defaults are filled;
        unknown keys are rejected, so a typo in a mapping is caught."""
        if not isinstance(row, dict):
            raise RecordError(cls.__name__, "<row>", f"expected an object, got {type(row).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - set(known))
        if unknown:
            raise RecordError(cls.__name__, unknown[0], "unknown field")
        kwargs = {}
        for name, tp, optional in _fields(cls):
            f = known[name]
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if name not in row:
                if has_default:
                    continue
                if optional:
                    kwargs[name] = None
                    continue
                raise RecordError(cls.__name__, name, "missing")
            kwargs[name] = _from_plain(cls.__name__, name, row[name], tp, optional)
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def validate(self) -> None:
        for name in self.REQUIRED_TEXT:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise RecordError(type(self).__name__, name, "must be a non-empty string")


@cache
def _schema(cls: type) -> pa.Schema:
    return pa.schema([pa.field(n, _arrow_type(t), nullable=o) for n, t, o in _fields(cls)])


def to_table(records: typing.Iterable[Record], cls: type[Record]) -> pa.Table:
    """Records of one type as an Arrow table with the record's schema (empty table if none)."""
    rows = [r.to_dict() for r in records]
    return pa.Table.from_pylist(rows, schema=cls.arrow_schema())


def from_table(table: pa.Table, cls: type[R]) -> list[R]:
    return [cls.from_dict(row) for row in table.to_pylist()]


def canonical_order(table: pa.Table, cls: type[Record]) -> pa.Table:
    """The rows of a round file in one order, whatever order the workers wrote them in: by the
    record's id columns first, then by its other scalar columns (a total order for distinct rows).
    Two runs of one config, with any number of workers, then write identical files."""
    schema = cls.arrow_schema()
    scalar = [f.name for f in schema
              if pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
              or pa.types.is_boolean(f.type)]
    ids = [n for n in scalar if n.endswith("_id")]
    keys = ids + [n for n in scalar if n not in ids]
    return table.sort_by([(k, "ascending") for k in keys]) if keys and table.num_rows else table


# Measurements of time: they differ between two runs of the same config by nature.
VOLATILE_FIELDS = frozenset({"duration_s"})


def comparable_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of a round file without their time measurements (at any depth): what two runs of
    one config must agree on exactly."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip(row) for row in table.to_pylist()]
