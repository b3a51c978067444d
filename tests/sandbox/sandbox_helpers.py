"""Helpers shared by the sandbox tests."""

from plumline.data_schemas import TestSpec


def specs(*codes: str) -> list[TestSpec]:
    return [TestSpec(code=c, test_id=f"t{i}") for i, c in enumerate(codes)]


def healthy(box) -> None:
    """The slot that just ran something hostile still gives honest verdicts."""
    r = box.run("def f(x):\n    return x + 1\n", specs("assert f(1) == 2", "assert f(1) == 3"))
    assert [t.status for t in r.test_results] == ["passed", "failed"], r
