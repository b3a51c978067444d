"""Which rows a round trains on: fresh on-policy rows by default, or accumulated over rounds with a cap."""

from __future__ import annotations

import pyarrow.parquet as pq
from plumline.data_schemas import DpoRow, to_table
from plumline.pipeline.config import load_config
from plumline.pipeline.layout import RoundLayout
from plumline.pipeline.training import training_data


def _write_round(run_dir, r: int, n: int) -> None:
    rows = [DpoRow(prompt=f"p{r}-{i}", chosen="a", rejected="b", problem_id=f"q{i}", chosen_sample_id="c",
                   rejected_sample_id="d", chosen_pass_ratio=1.0, rejected_pass_ratio=0.0, margin=1.0,
                   strategy="plum", round=r) for i in range(n)]
    layout = RoundLayout(run_dir, r)
    layout.stages_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows, DpoRow), layout.artifact_path("dpo"))


def _cfg(tmp_path, *overrides):
    path = tmp_path / "run.yaml"
    path.write_text("sources: [{path: bundled:easy}]\npolicy: {model: m}\ntraining: {method: dpo}\n")
    return load_config(path, list(overrides))


def test_fresh_rows_by_default_accumulated_newest_first_with_a_cap(tmp_path):
    run = tmp_path / "run"
    for r, n in enumerate((3, 4, 2)):
        _write_round(run, r, n)
    layout = RoundLayout(run, 2)
    path, rows, rounds = training_data(_cfg(tmp_path), layout, "dpo")
    assert path == layout.artifact_path("dpo") and rows == 2 and rounds == [2]

    path, rows, rounds = training_data(_cfg(tmp_path, "dpo.accumulate.enabled=true"), layout, "dpo")
    assert rows == 9 and rounds == [2, 1, 0]
    assert [r["round"] for r in pq.read_table(path).to_pylist()] == [2] * 2 + [1] * 4 + [0] * 3

    capped = _cfg(tmp_path, "dpo.accumulate.enabled=true", "dpo.accumulate.max_rows=5")
    path, rows, rounds = training_data(capped, layout, "dpo")
    assert rows == 5 and rounds == [2, 1]
    assert [r["round"] for r in pq.read_table(path).to_pylist()] == [2, 2, 1, 1, 1]
