"""Wire format shared by the trusted parent and the in-sandbox supervisor.

Stdlib only and no package imports: the supervisor runs this file's source (concatenated with
``_server.py``) under ``/usr/bin/python3 -I -S`` inside bubblewrap, where plumline is not importable.

Values cross the sandbox boundary as *tagged plain data*: exact builtin types only. Subclasses of
builtin types are converted to their base type from their raw storage (``int.__int__(x)``,
``tuple.__iter__(x)`` ...), so an ``int`` subclass whose ``__eq__`` is always true arrives as a plain
``int``. Anything else arrives as an :class:`Opaque` marker that never satisfies a check.
"""

import json
import math
import struct

MAX_DEPTH = 100  # nesting depth of one value
MAX_NODES = 2_000_000  # scalar + container nodes of one value
_HDR = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class Opaque:
    """A value that was not plain data (or was too big/deep): fails every check."""

    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = str(type_name)[:200]

    def __repr__(self):
        return "<opaque %s>" % self.type_name


class _TooBig(Exception):
    pass


def encode(value):
    """Plain tagged form of ``value`` (JSON-ready). Never raises: odd values become opaque."""
    budget = [MAX_NODES]
    try:
        return _enc(value, 0, budget)
    except _TooBig as exc:
        return ["?", str(exc)]
    except BaseException as exc:  # a hostile __iter__ etc.: the value is not plain
        return ["?", "unencodable " + type(exc).__name__]


def _enc(v, depth, budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig("too large")
    if depth > MAX_DEPTH:
        raise _TooBig("too deep")
    t = type(v)
    if v is None:
        return None
    if t is bool:
        return v
    if t is str:
        return v
    if t is int:
        return ["i", format(v, "x")]
    if t is float:
        return ["f", float.hex(v)]
    if t is list:
        return ["l", [_enc(x, depth + 1, budget) for x in v]]
    if t is tuple:
        return ["t", [_enc(x, depth + 1, budget) for x in v]]
    if t is dict:
        return ["d", [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)] for k, x in v.items()]]
    if t is set:
        return ["s", [_enc(x, depth + 1, budget) for x in v]]
    if t is frozenset:
        return ["z", [_enc(x, depth + 1, budget) for x in v]]
    if t is bytes:
        return ["y", v.hex()]
    if t is bytearray:
        return ["Y", bytes(v).hex()]
    if t is complex:
        return ["c", float.hex(v.real), float.hex(v.imag)]
    # Subclasses of plain types: read the raw storage through the base type's own slots.
    if issubclass(t, bool):
        return bool(int.__int__(v))
    if issubclass(t, int):
        return ["i", format(int.__int__(v), "x")]
    if issubclass(t, float):
        return ["f", float.hex(float.__float__(v))]
    if issubclass(t, str):
        return str.__str__(v)
    if issubclass(t, bytes):
        return ["y", bytes(memoryview(v)).hex()]
    if issubclass(t, tuple):
        return ["t", [_enc(x, depth + 1, budget) for x in tuple.__iter__(v)]]
    if issubclass(t, list):
        return ["l", [_enc(x, depth + 1, budget) for x in list.__iter__(v)]]
    if issubclass(t, dict):
        return ["d", [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)]
                      for k, x in dict.items(v)]]
    if issubclass(t, frozenset):
        return ["z", [_enc(x, depth + 1, budget) for x in frozenset.__iter__(v)]]
    if issubclass(t, set):
        return ["s", [_enc(x, depth + 1, budget) for x in set.__iter__(v)]]
    return ["?", getattr(t, "__name__", "?")]


_PLAIN = (type(None), bool, int, float, str, bytes, bytearray, complex)


def plain(value):
    """``value`` itself when it is plain data all the way down (or not plain-based at all),
    otherwise an exact-type copy. Used on every call result inside test code, so a candidate's
    int/float/list subclass with rigged operators is stripped before the test computes with it."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t in (list, tuple, dict, set, frozenset) or issubclass(t, (int, float, str, bytes, list, tuple, dict,
                                                                   set, frozenset)):
        try:
            enc = encode(value)
            if isinstance(enc, list) and enc and enc[0] == "?":
                return value
            if not _needs_copy(value, 0):
                return value
            return decode(enc)
        except BaseException:
            return value
    return value


def _needs_copy(v, depth):
    t = type(v)
    if t in _PLAIN:
        return False
    if depth > MAX_DEPTH:
        return True
    if t is list or t is tuple or t is set or t is frozenset:
        return any(_needs_copy(x, depth + 1) for x in v)
    if t is dict:
        return any(_needs_copy(k, depth + 1) or _needs_copy(x, depth + 1) for k, x in v.items())
    return True


def decode(obj, depth=0):
    """Inverse of :func:`encode`; strict: malformed input raises ``ValueError``."""
    if depth > MAX_DEPTH + 2:
        raise ValueError("value nested too deep")
    if obj is None or type(obj) is bool or type(obj) is str:
        return obj
    if type(obj) is not list or not obj or type(obj[0]) is not str:
        raise ValueError("malformed value")
    tag = obj[0]
    if tag == "i" and len(obj) == 2 and type(obj[1]) is str and len(obj[1]) < 10_000_000:
        return int(obj[1], 16)
    if tag == "f" and len(obj) == 2 and type(obj[1]) is str and len(obj[1]) < 64:
        return float.fromhex(obj[1])
    if tag == "c" and len(obj) == 3 and type(obj[1]) is str and type(obj[2]) is str:
        return complex(float.fromhex(obj[1][:64]), float.fromhex(obj[2][:64]))
    if tag in ("y", "Y") and len(obj) == 2 and type(obj[1]) is str:
        b = bytes.fromhex(obj[1])
        return b if tag == "y" else bytearray(b)
    if tag == "?" and len(obj) == 2:
        return Opaque(obj[1])
    if len(obj) != 2 or type(obj[1]) is not list:
        raise ValueError("malformed value")
    items = obj[1]
    if tag == "l":
        return [decode(x, depth + 1) for x in items]
    if tag == "t":
        return tuple(decode(x, depth + 1) for x in items)
    if tag == "s":
        return set(decode(x, depth + 1) for x in items)
    if tag == "z":
        return frozenset(decode(x, depth + 1) for x in items)
    if tag == "d":
        out = {}
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict item")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    raise ValueError("unknown tag %r" % (tag,))


def _contains_opaque(v, depth=0):
    t = type(v)
    if t is Opaque:
        return True
    if depth > MAX_DEPTH + 2:
        return True
    if t in (list, tuple, set, frozenset):
        return any(_contains_opaque(x, depth + 1) for x in v)
    if t is dict:
        return any(_contains_opaque(k, depth + 1) or _contains_opaque(x, depth + 1) for k, x in v.items())
    return False


_OPS = {
    "Eq": lambda a, b: a == b,
    "NotEq": lambda a, b: a != b,
    "Lt": lambda a, b: a < b,
    "LtE": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "GtE": lambda a, b: a >= b,
    "Is": lambda a, b: a is b or (type(a) is type(b) and type(a) in (int, str, float) and a == b),
    "IsNot": lambda a, b: not (a is b or (type(a) is type(b) and type(a) in (int, str, float) and a == b)),
    "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b,
}


def evaluate_site(site, values):
    """Decide one assert in trusted code. ``site``: {"ops": [...], "operands": [["lit", enc] | ["val"]],
    "neg": bool}; ``values``: decoded values for the "val" operands, in order.
    Returns "pass", "fail" or "error:<Type>" (the comparison itself raised, as it would have in the test).
    Any opaque operand fails the check (fail closed)."""
    operands = []
    it = iter(values)
    try:
        for op in site["operands"]:
            if op[0] == "lit":
                operands.append(op[2] if len(op) > 2 else decode(op[1]))
            else:
                operands.append(next(it))
    except StopIteration:
        return "fail"
    if any(_contains_opaque(v) for v in operands):
        return "fail"
    ops = site["ops"]
    try:
        if not ops:  # truth test
            if len(operands) != 1:
                return "fail"
            result = bool(operands[0])
        else:
            if len(operands) != len(ops) + 1:
                return "fail"
            result = True
            for k, op in enumerate(ops):
                fn = _OPS.get(op)
                if fn is None:
                    return "fail"
                if not fn(operands[k], operands[k + 1]):
                    result = False
                    break
    except RecursionError:
        return "fail"
    except Exception as exc:  # e.g. TypeError for '<' between str and int
        return "error:" + type(exc).__name__
    if site.get("neg"):
        result = not result
    return "pass" if result else "fail"


def normalize_stdout(text):
    """I/O tests compare stdout per line with trailing whitespace ignored and trailing blank lines
    dropped (APPS convention)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def pack(obj):
    data = _DUMPS(obj).encode("utf-8", "surrogatepass")
    return _HDR.pack(len(data)) + data


def unpack_header(hdr):
    (n,) = _HDR.unpack(hdr)
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    return n


def loads(data):
    return json.loads(data.decode("utf-8", "surrogatepass"))


def isfinite_or_nan(x):  # keeps math imported for the supervisor's use
    return math.isfinite(x) or math.isnan(x)
