"""Type-aware input mutation, in the manner of EvalPlus (``evalplus/gen/type_mut.py``): seed inputs
(the examples' and the model's) are multiplied by mutating one argument at a time, keeping each
value's type (an int stays an int, a list of str stays a list of str), and by edge values (empty,
zero, negative, single element, long).

Deterministic: every choice comes from ``random.Random(seed)``, the seed derived by the caller from
the run's seed (``derive_seed(seed, "tests", "mutation", problem_id)``). Bounded: values stay small
(``MAX_LEN`` elements or characters, ``MAX_INT`` magnitude for new integers, ``max_chars`` of source
per input) so a test stays cheap to run and to read.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from typing import Any

from plumline.transforms.logic.synthesis.inputs import Args, input_key, literal_round_trips

MAX_LEN = 40  # longest string / list a mutation makes
MAX_INT = 10**6
_CHARS = string.ascii_letters + string.digits + " _-.,!"


def _grow(seq: list, n: int) -> list:
    return (seq * (n // max(1, len(seq)) + 1))[:n] if seq else []


def edge_values(v: Any) -> list[Any]:
    """Edge values of the same type as ``v`` (empty, zero, negative, one element, long)."""
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [0, 1, -1, -v, v + 1, v - 1, 10**5]
    if isinstance(v, float):
        return [0.0, -v, 1.0, -1.0, v / 2, v * 1000.0, 0.5]
    if isinstance(v, str):
        long = (v * (MAX_LEN // max(1, len(v)) + 1))[:MAX_LEN] if v else "a" * MAX_LEN
        return ["", v[:1], " ", long, v.upper(), v[::-1]]
    if isinstance(v, list):
        return [[], v[:1], _grow(v, MAX_LEN), v[::-1], sorted(v, key=repr)]
    if isinstance(v, tuple):
        return [tuple(x) for x in ([], v[:1], v[::-1])] if len(v) != 2 else [v[::-1]]
    if isinstance(v, dict):
        items = list(v.items())
        return [{}, dict(items[:1])]
    if isinstance(v, (set, frozenset)):
        return [type(v)(), type(v)(sorted(v, key=repr)[:1])]
    return []


def _new_like(v: Any, rng: random.Random) -> Any:
    """A fresh small value of v's type (used to insert elements and keys)."""
    if isinstance(v, bool):
        return rng.random() < 0.5
    if isinstance(v, int):
        return rng.randint(-100, 100)
    if isinstance(v, float):
        return round(rng.uniform(-100.0, 100.0), 3)
    if isinstance(v, str):
        if len(v) == 1:
            return rng.choice(_CHARS)
        return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 6)))
    return mutate_value(v, rng)


def mutate_value(v: Any, rng: random.Random, depth: int = 0) -> Any:
    """One random type-keeping mutation of ``v`` (containers: of one element, or of their shape)."""
    if depth > 4:
        return v
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        op = rng.randrange(6)
        out = [v + 1, v - 1, -v, v * 2, rng.randint(-100, 100), v + rng.randint(-10, 10)][op]
        return max(-MAX_INT, min(MAX_INT, out)) if abs(v) <= MAX_INT else out
    if isinstance(v, float):
        op = rng.randrange(5)
        return [v + 1.0, v - 1.0, -v, v * 2.0, round(rng.uniform(-100.0, 100.0), 3)][op]
    if isinstance(v, str):
        if not v:
            return _new_like("ab", rng)
        i = rng.randrange(len(v))
        op = rng.randrange(6)
        if op == 0:
            return v[:i] + v[i + 1:]  # remove a character
        if op == 1:
            return (v[:i] + rng.choice(_CHARS) + v[i:])[:MAX_LEN]  # insert one
        if op == 2:
            return v[:i] + rng.choice(_CHARS) + v[i + 1:]  # replace one
        if op == 3:
            return v.swapcase()
        if op == 4:
            return (v + v)[:MAX_LEN]
        return v[i:] + v[:i]  # rotate
    if isinstance(v, list):
        if not v:
            return v  # nothing tells the element type; edge values cover []
        i = rng.randrange(len(v))
        op = rng.randrange(5)
        if op == 0:
            return v[:i] + v[i + 1:]
        if op == 1 and len(v) < MAX_LEN:
            return v[:i] + [_new_like(v[i], rng)] + v[i:]
        if op == 2:
            return v[:i] + [mutate_value(v[i], rng, depth + 1)] + v[i + 1:]
        if op == 3:
            w = list(v)
            rng.shuffle(w)
            return w
        return (v + [mutate_value(rng.choice(v), rng, depth + 1)])[:MAX_LEN]
    if isinstance(v, tuple):
        if not v:
            return v
        i = rng.randrange(len(v))  # a tuple is usually a record of fixed size: mutate one field
        return v[:i] + (mutate_value(v[i], rng, depth + 1),) + v[i + 1:]
    if isinstance(v, dict):
        if not v:
            return v
        keys = list(v)
        k = keys[rng.randrange(len(keys))]
        op = rng.randrange(3)
        w = dict(v)
        if op == 0:
            w[k] = mutate_value(v[k], rng, depth + 1)
        elif op == 1:
            del w[k]
        elif len(w) < MAX_LEN:
            nk = _new_like(k, rng)
            if isinstance(nk, (list, dict, set)):
                return w
            w[nk] = mutate_value(v[k], rng, depth + 1)
        return w
    if isinstance(v, (set, frozenset)):
        if not v:
            return v
        items = sorted(v, key=repr)
        op = rng.randrange(2)
        if op == 0:
            items.pop(rng.randrange(len(items)))
        else:
            new = _new_like(items[rng.randrange(len(items))], rng)
            if not isinstance(new, (list, dict, set)):
                items.append(new)
        return type(v)(items)
    return v


def mutate_inputs(seeds: Sequence[Args], cap: int, seed: int, *, max_chars: int = 400,
                  attempts_per_input: int = 20) -> list[Args]:
    """Up to ``cap`` distinct inputs: the seeds first (in order), then edge values (one argument at a
    time), then random type-keeping mutations of pool members, until the cap or the attempt budget.
    Same seeds and seed -> same list. Inputs whose source would exceed ``max_chars``, or that do not
    read back as literals, are skipped."""
    rng = random.Random(seed)
    pool: list[Args] = []
    seen: set[str] = set()

    def add(args: Args) -> bool:
        key = input_key(args)
        if key in seen or len(key) > max_chars or not all(literal_round_trips(a) for a in args):
            return False
        seen.add(key)
        pool.append(args)
        return True

    for s in seeds:
        if len(pool) >= cap:
            return pool
        add(tuple(s))
    originals = list(pool)
    edges: list[Args] = []
    for s in originals:
        for i, a in enumerate(s):
            edges += [s[:i] + (e,) + s[i + 1:] for e in edge_values(a)]
    rng.shuffle(edges)  # no argument position gets the whole budget
    for e in edges:
        if len(pool) >= cap:
            return pool
        add(e)
    budget = attempts_per_input * max(1, cap)
    while pool and len(pool) < cap and budget > 0:
        budget -= 1
        base = pool[rng.randrange(len(pool))]
        if not base:
            break
        i = rng.randrange(len(base))
        add(base[:i] + (mutate_value(base[i], rng),) + base[i + 1:])
    return pool
