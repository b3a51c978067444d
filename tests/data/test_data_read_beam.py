"""ReadProblems on Beam's FnApiRunner: same problems and errors as the pure reader, global id dedupe."""

from __future__ import annotations

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from plumline.data_schemas import Problem
from plumline.transforms.logic.readers import SourceConfig, read_problems
from plumline.transforms.read import ReadProblems

GOOD = {"prompt": "def f(x):\n    pass\n", "entry_point": "f",
        "given_tests": [{"code": "assert f(1) is None"}]}


def _contains_all(expected):
    """Matcher (pickled into the pipeline): every expected item is among the actual ones."""
    def _check(actual):
        actual = list(actual)
        missing = [e for e in expected if e not in actual]
        if missing:
            raise BeamAssertException(f"missing {missing} in {actual}")
    return _check


def _count(n):
    def _check(actual):
        actual = list(actual)
        if len(actual) != n:
            raise BeamAssertException(f"expected {n} items, got {len(actual)}: {actual}")
    return _check


def test_beam_matches_pure_reader_with_errors_dupes_and_glob(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join([
        json.dumps({**GOOD, "problem_id": "X"}),
        "{broken",
        json.dumps({**GOOD, "problem_id": "Y"}),
    ]) + "\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({**GOOD, "problem_id": "X", "prompt": "dup"}) + "\n")
        f.write(json.dumps({**GOOD, "problem_id": "Z"}) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    sources = [SourceConfig(path=str(tmp_path / "*.jsonl*")),
               SourceConfig(path=str(tmp_path / "none-*.jsonl"))]
    pure = list(read_problems(sources))
    pure_problems = sorted((p.problem_id, p.prompt) for p in pure if isinstance(p, Problem))
    pure_errors = sorted((e.input, e.reason) for e in pure if not isinstance(e, Problem))
    # the pure reader's own view, which Beam must reproduce
    assert pure_problems == [("X", GOOD["prompt"]), ("Y", GOOD["prompt"]), ("Z", GOOD["prompt"])]
    assert (f"{tmp_path / 'a.jsonl'}:2",
            ("malformed JSON: Expecting property name enclosed in double quotes (column 2)")) in pure_errors
    assert any(i == f"{tmp_path / 'b.jsonl.gz'}:1" and r.startswith("duplicate problem id 'X'") and
               f"{tmp_path / 'a.jsonl'}:1" in r for i, r in pure_errors)
    beam_errors_expected = [e for e in pure_errors if "no file matches" not in e[1]]
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems(sources)
        assert_that(out["problems"] | beam.Map(lambda x: (x.problem_id, x.prompt)), equal_to(pure_problems),
                    label="Problems")
        errs = out["errors"] | beam.Map(lambda e: (e.input, e.reason))
        assert_that(errs, _contains_all(beam_errors_expected), label="SameErrors")
        assert_that(errs | beam.Filter(lambda ir: ir[1] == "no file matches this path"), _count(1),
                    label="NoMatch")
        assert_that(errs, _count(len(pure_errors)), label="ErrorCount")


def test_beam_bundled_easy_and_limit(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({**GOOD, "prompt": f"{name}{i}"}) + "\n" for i in range(5)))
    n_easy = len(list(read_problems(SourceConfig(path="bundled:easy"))))
    assert n_easy >= 40
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = p | ReadProblems([SourceConfig(path="bundled:easy"),
                                SourceConfig(path=str(tmp_path / "*.jsonl"), limit=7, source="lim")])
        assert_that(out["errors"], equal_to([]), label="NoErrors")
        assert_that(out["problems"] | beam.Filter(lambda x: x.source == "plumline-easy"), _count(n_easy),
                    label="Easy")
        assert_that(out["problems"] | beam.Filter(lambda x: x.source == "lim") | beam.Map(lambda x: x.prompt),
                    equal_to(["a0", "a1", "a2", "a3", "a4", "b0", "b1"]), label="Limited")


def test_beam_rejects_empty_source_list():
    with pytest.raises(ValueError, match="at least one source"):
        ReadProblems([])
