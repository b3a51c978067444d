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
