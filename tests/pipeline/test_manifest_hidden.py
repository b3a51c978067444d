"""Chosen precision against hidden (evaluation-only) tests in the manifest (issue 13)."""

from __future__ import annotations

from types import SimpleNamespace

from plumline.pipeline.manifest import hidden_test_precision


def _e(sid: str, passed: int, total: int):
    return SimpleNamespace(sample_id=sid, eval_passed=passed, eval_total=total)


def test_hidden_test_precision():
    ex = [_e("c1", 3, 3), _e("c2", 1, 3), _e("r1", 3, 3), _e("r2", 0, 3), _e("x", 0, 0)]
    rows = [SimpleNamespace(chosen_sample_id="c1", rejected_sample_id="r1"),
            SimpleNamespace(chosen_sample_id="c1", rejected_sample_id="r2"),
            SimpleNamespace(chosen_sample_id="c2", rejected_sample_id="x")]
    got = hidden_test_precision(ex, rows)
    assert got == {"chosen_precision": 0.5, "chosen_judged": 2, "rejected_pass_share": 0.5,
                   "rejected_judged": 2}
    assert hidden_test_precision(ex, [])["chosen_precision"] is None
