"""Expected outputs for input-first tests, and the asserts written from them.

- With a reference solution: the reference is run in the sandbox on every input (``probe_specs``: one
  probe test per input calls the entry point and reports ``repr`` of the result through the test's
  failure message, which crosses the sandbox boundary as data; ``read_probe_results`` reads it back
  with ``ast.literal_eval``). Inputs that make the reference raise, time out or return something with
  no literal are dropped as invalid.
- Without one: ``agreed_output`` takes the largest group of identical outputs among the policy's
  samples on an input, when it is large enough (a minimum share and size), as in CodeT/rStar-Coder.
- ``expected_assert`` writes the test: exact ``==``, ``is None``, or ``math.isclose`` when the value
  holds floats (flat lists/tuples of numbers element by element).
- ``reduce_suite``: greedy set cover over a tests x mutants kill matrix (EvalPlus' suite reduction).

Pure: the sandbox's results are passed in.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plumline.data_schemas import TestDropReason, TestSpec, TestStatus, status_value
from plumline.transforms.logic.synthesis.inputs import Args, call_source, literal_round_trips

PROBE_MARK = "PLUMLINE-VALUE:"
PROBES_PER_JOB = 20  # probes per sandbox program: one slow input costs its chunk, not the whole set
# The sandbox keeps 500 characters of a failure message: longer outputs cannot be read back whole.
MAX_VALUE_CHARS = 480
REL_TOL, ABS_TOL = 1e-6, 1e-9


def probe_specs(entry_point: str, inputs: Sequence[Args], prefix: str = "p") -> list[TestSpec]:
    """One probe test per input: call the entry point, report ``repr`` of its result (``test_id``
    ``{prefix}{index}``). The value is computed where the test runs; only its text comes back."""
    return probe_specs_for_calls([call_source(entry_point, args) for args in inputs], prefix)


def probe_specs_for_calls(calls: Sequence[str], prefix: str = "p") -> list[TestSpec]:
    """``probe_specs`` for calls already written as source (``f(1, [2])``)."""
    return [TestSpec(code=f"_out = {call}\nassert False, {PROBE_MARK!r} + repr(_out)", test_id=f"{prefix}{i}")
            for i, call in enumerate(calls)]


@dataclass(frozen=True)
class ProbeOutcome:
    """The reference's output on one input (``ok``), or why there is none (``reason``, ``detail``)."""

    ok: bool
    value: Any = None
    reason: TestDropReason | None = None
    detail: str = ""


def read_probe_result(result: Any) -> ProbeOutcome:
    """One probe test's result (a ``TestResult``) -> the value, or the reason the input is invalid."""
    if result is None:
        return ProbeOutcome(False, reason=TestDropReason.ORACLE_NOT_RUN, detail="the reference never ran it")
    st = status_value(result.status)
    msg = result.error_message or ""
    if st == TestStatus.FAILED.value and result.error_type == "AssertionError" and msg.startswith(PROBE_MARK):
        text = msg[len(PROBE_MARK):]
        if len(text) > MAX_VALUE_CHARS:
            return ProbeOutcome(False, reason=TestDropReason.UNREPRESENTABLE_OUTPUT,
                                detail="the output is too long for a test")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            return ProbeOutcome(False, reason=TestDropReason.UNREPRESENTABLE_OUTPUT,
                                detail=f"the output has no literal: {text[:80]}")
        if not literal_round_trips(value):
            return ProbeOutcome(False, reason=TestDropReason.UNREPRESENTABLE_OUTPUT,
                                detail="the output does not read back as a literal")
        return ProbeOutcome(True, value=value)
    if st == TestStatus.TIMEOUT.value:
        return ProbeOutcome(False, reason=TestDropReason.ORACLE_TIMEOUT,
                            detail="the reference solution times out on this input")
    if st == TestStatus.NOT_RUN.value:
        return ProbeOutcome(False, reason=TestDropReason.ORACLE_NOT_RUN, detail="the reference never ran it")
    return ProbeOutcome(False, reason=TestDropReason.ORACLE_ERROR,
                        detail=f"the reference raises {result.error_type or 'an error'} on this input")


def read_probe_results(program_results: Sequence[Any], n_inputs: int,
                       prefix: str = "p") -> list[ProbeOutcome]:
    """Outcomes of ``n_inputs`` probes spread over one or more ProgramResults (chunks)."""
    by_id = {r.test_id: r for pr in program_results for r in (getattr(pr, "test_results", ()) or ())}
    return [read_probe_result(by_id.get(f"{prefix}{i}")) for i in range(n_inputs)]


def _has_float(v: Any) -> bool:
    if isinstance(v, float):
        return True
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(_has_float(x) for x in v)
    if isinstance(v, dict):
        return any(_has_float(x) for x in v.values())
    return False


def expected_assert(entry_point: str, args: Args, value: Any) -> str:
    """The assert that checks ``entry_point(*args)`` against ``value`` (the reference's output)."""
    return expected_assert_for_call(call_source(entry_point, args), value)


def expected_assert_for_call(call: str, value: Any) -> str:
    """The assert that checks the call (source text) against ``value``."""
    close = f"rel_tol={REL_TOL!r}, abs_tol={ABS_TOL!r}"
    if value is None:
        return f"assert {call} is None"
    if isinstance(value, float):
        return f"import math\nassert math.isclose({call}, {value!r}, {close})"
    if (isinstance(value, (list, tuple)) and _has_float(value)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
        kind = type(value).__name__
        return (f"import math\n_out = {call}\n_want = {value!r}\n"
                f"assert isinstance(_out, {kind}) and len(_out) == len(_want) and "
                f"all(math.isclose(a, b, {close}) for a, b in zip(_out, _want))")
    return f"assert {call} == {value!r}"


def canonical_key(value: Any) -> str:
    """A text that is the same for equal literal values, whatever the order a set or dict was built in
    (a set's repr follows hashing and insertion history), so outputs can be grouped by equality."""
    def canon(v: Any) -> Any:
        if isinstance(v, (set, frozenset)):
            return (type(v).__name__, sorted((canon(x) for x in v), key=repr))
        if isinstance(v, dict):
            return ("dict", sorted(((canon(k), canon(x)) for k, x in v.items()), key=repr))
        if isinstance(v, (list, tuple)):
            return (type(v).__name__, [canon(x) for x in v])
        return (type(v).__name__, v)
    return repr(canon(value))


def agreed_output(outputs: Mapping[str, str | None], *, min_share: float = 0.5,
                  min_size: int = 2) -> str | None:
    """Agreement without a reference: ``outputs[sample_id]`` is a sample's output on one input (its
    repr; None when it raised or timed out). The largest group of identical outputs wins when it has
    at least ``min_size`` samples and ``min_share`` of all samples; ties between largest groups mean
    no agreement (None). Samples that failed count in the denominator, never as a group."""
    groups = Counter(v for v in outputs.values() if v is not None)
    won = _largest_group(groups, len(outputs), min_share, min_size)
    return won[0] if won else None


def _largest_group(groups: Counter, n: int, min_share: float, min_size: int) -> tuple[Any, int] | None:
    """The largest group and its size, when it is alone at the top and large enough among ``n``."""
    if not n or not groups:
        return None
    (best, size), *rest = groups.most_common()
    if rest and rest[0][1] == size:
        return None
    if size < min_size or size / n < min_share:
        return None
    return best, size


def agreed_behaviour(behaviours: Mapping[str, Sequence[str | None]], *, min_share: float = 0.5,
                     min_size: int = 2) -> tuple[list[str | None], int] | None:
    """Agreement at the program level (CodeT's functional clusters, MBR-exec): ``behaviours[program]``
    is a program's outputs on every input in order (None where it raised or timed out). Programs with
    the same outputs on every input form a cluster; the largest one wins when it has at least
    ``min_size`` programs and ``min_share`` of all programs; ties mean no agreement. A cluster that
    returned nothing on any input (raised, or returned None everywhere) never wins. Returns the
    winning outputs and the cluster's size.

    Stricter than ``agreed_output`` per input: two wrong programs that happen to agree on one input
    but not on the rest cannot outvote the right ones there."""
    nothing = (None, canonical_key(None))  # raised, or returned None: a program that never returns
    groups = Counter(tuple(v) for v in behaviours.values() if any(x not in nothing for x in v))
    won = _largest_group(groups, len(behaviours), min_share, min_size)
    return (list(won[0]), won[1]) if won else None


def kill_matrix(test_ids: Sequence[str], mutant_results: Sequence[Any]) -> dict[str, set[int]]:
    """test_id -> indices of the mutants it kills: any status but passed (not_run too: a mutant
    that stalls or dies before a test is caught by the suite either way)."""
    out: dict[str, set[int]] = {t: set() for t in test_ids}
    for m, res in enumerate(mutant_results):
        statuses = {r.test_id: status_value(r.status) for r in (getattr(res, "test_results", ()) or ())}
        for t in test_ids:
            if statuses.get(t, TestStatus.NOT_RUN.value) != TestStatus.PASSED.value:
                out[t].add(m)
    return out


def reduce_suite(test_ids: Sequence[str], kills: Mapping[str, set[int]], *, min_tests: int = 0,
                 already_killed: set[int] | frozenset[int] = frozenset()) -> list[str]:
    """Greedy set cover: a small subset of ``test_ids`` that kills every mutant the whole set kills.
    Each step takes the test killing the most mutants not yet killed (ties: the earlier test, so
    callers list preferred tests first). Then, up to ``min_tests``, the remaining tests in order.
    ``already_killed``: mutants other kept tests (e.g. the examples) kill: nothing is needed for them.
    Returns the chosen ids in the order of ``test_ids``."""
    ids = list(dict.fromkeys(test_ids))
    target = set().union(*(kills.get(t, set()) for t in ids)) - set(already_killed) if ids else set()
    chosen: list[str] = []
    covered: set[int] = set()
    while covered != target:
        best = max(ids, key=lambda t: (len((kills.get(t, set()) & target) - covered), -ids.index(t)))
        gain = (kills.get(best, set()) & target) - covered
        if not gain:
            break
        chosen.append(best)
        covered |= gain
    for t in ids:
        if len(chosen) >= min_tests:
            break
        if t not in chosen:
            chosen.append(t)
    picked = set(chosen)
    return [t for t in ids if t in picked]
