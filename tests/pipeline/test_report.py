"""report.html and the dataset card without a run: an empty run folder, licences, the offline check."""

from __future__ import annotations

from types import SimpleNamespace

from plumline.pipeline.dataset_card import UNKNOWN, source_licence
from plumline.pipeline.report import build_report
from plumline.transforms.logic.readers import SourceConfig
from report_browser import external_refs


def test_a_run_without_finished_rounds_still_gets_a_page(tmp_path):
    page, ids = build_report(tmp_path)
    assert len(ids) == 7 and all(f'id="{i}"' in page for i in ids)
    assert "No finished round" in page and "No held-out evaluation" in page
    assert external_refs(page) == []


def test_source_licences_come_from_the_config_or_the_bundled_set_else_unknown():
    assert source_licence(SourceConfig(path="bundled:humaneval")) == "mit"
    assert source_licence(SourceConfig(path="bundled:easy")) == "apache-2.0"
    assert source_licence(SourceConfig(path="/data/problems.jsonl")) == UNKNOWN
    assert source_licence(SimpleNamespace(path="/data/x.jsonl", license="cc-by-4.0")) == "cc-by-4.0"


def test_external_references_are_found_in_markup_not_in_script_text():
    page = ("<html><head><link rel=stylesheet href='//cdn.example.org/a.css'>"
            "<style>body { background: url('https://example.org/bg.png') }</style>"
            "<script>var s = '<a href=\"https://plotly.com\">';</script></head>"
            "<body><img src=\"http://example.com/x.png\"><a href='#top'>top</a></body></html>")
    assert external_refs(page) == ["//cdn.example.org/a.css", "https://example.org/bg.png",
                                   "http://example.com/x.png"]


def test_pass_ratio_bins_keep_all_passed_apart():
    from plumline.pipeline.report import RATIO_BINS, ratio_counts

    counts = ratio_counts([0.0, 0.05, 0.1, 0.5, 0.99, 1.0, 1.0])
    assert len(counts) == len(RATIO_BINS) and sum(counts) == 7
    assert counts[0] == 2 and counts[1] == 1 and counts[5] == 1 and counts[9] == 1 and counts[10] == 2


def _prm_round(run_dir, number: int, firsts: list[tuple[int | None, int]], prm: dict | None) -> None:
    """A round folder with a manifest and a prm.parquet of rows (first_bad_step, steps)."""
    import json

    import pyarrow.parquet as pq
    from plumline.data_schemas import to_table
    from plumline.data_schemas.records import PrmRow

    folder = run_dir / f"round-{number:03d}"
    folder.mkdir(parents=True)
    manifest = {"round": number, **({"prm": prm} if prm is not None else {})}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = [PrmRow(prompt="p", completions=tuple(f"x{j} = {j}" for j in range(steps)),
                   labels=tuple(first is None or j < first for j in range(steps)), problem_id=f"q{i}",
                   sample_id=f"s{number}-{i}", round=number, first_bad_step=first, k=3,
                   outcome="failed" if first is not None else "passed")
            for i, (first, steps) in enumerate(firsts)]
    if rows:
        pq.write_table(to_table(rows, PrmRow), folder / "prm.parquet")


def test_the_prm_panel_shows_first_bad_positions_and_the_labelling_cost_per_round(tmp_path):
    from plumline.pipeline.report import POSITION_BINS, position_counts, prm_cost_rows, read_run

    cost = {"programs": 5, "rows": 4, "not_labelled": 1, "probes": 9, "completions": 27, "executions": 25,
            "seconds_per_program": 0.5, "labelling_seconds": 2.5}
    # round 0 labelled 4 programs: bugs on the last of 4 steps, the 1st of 4, the 3rd of 10; one passes
    _prm_round(tmp_path, 0, [(3, 4), (0, 4), (2, 10), (None, 2)], cost)
    _prm_round(tmp_path, 1, [], None)  # a round without the prm stage
    page, ids = build_report(tmp_path)
    assert ids == ["plot-pass-ratio", "plot-outcomes", "plot-tests", "plot-pairs", "plot-prm-first-bad",
                   "plot-eval", "plot-stage-time", "plot-tokens"]
    assert 'id="plot-prm-first-bad"' in page and "Process supervision (PRM labels)" in page
    assert external_refs(page) == []
    rounds, _ = read_run(tmp_path)
    assert rounds[0].prm_rows == 4 and sorted(rounds[0].first_bad_positions) == [0.25, 0.3, 1.0]
    assert rounds[1].prm_rows == 0 and rounds[1].first_bad_positions == []
    counts = position_counts(rounds[0].first_bad_positions)  # 0.25 and 0.3 in (20%, 30%], 1.0 last
    assert counts == [0, 0, 2, 0, 0, 0, 0, 0, 0, 1] and len(POSITION_BINS) == 10
    # the cost table: round 0 only, straight from its manifest's prm section
    [row] = prm_cost_rows(rounds)
    assert row[:7] == ["round 0", 5, 4, 1, 9, 27, 25] and row[7:9] == ["0.50", "2.50"]
    assert abs(row[9] - (0.25 + 0.3 + 1.0) / 3) < 1e-9
    for cell in ("<td>27</td>", "<td>25</td>", "<td>0.50</td>", "<td>51.7%</td>"):
        assert cell in page, cell


def test_no_prm_panel_when_no_round_labelled(tmp_path):
    _prm_round(tmp_path, 0, [], {"programs": 0, "rows": 0})  # the stage ran and labelled nothing
    page, ids = build_report(tmp_path)
    assert "plot-prm-first-bad" not in ids and len(ids) == 7
    assert "PRM labels" not in page and "plot-prm-first-bad" not in page


def test_first_bad_positions_fall_in_right_closed_tenths():
    from plumline.pipeline.report import first_bad_position, position_counts

    assert first_bad_position(2, 10) == 0.3 and first_bad_position(0, 1) == 1.0
    assert position_counts([0.1, 0.3, 0.30000000000000004, 0.31, 1.0, 0.05]) == [2, 0, 2, 1, 0, 0, 0, 0, 0, 1]
