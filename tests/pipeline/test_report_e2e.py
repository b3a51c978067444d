"""report.html and the exported dataset folder of a real small run (real Beam, sandbox and Parquet; the
policy is the canned OpenAI-compatible server of conftest.py), and report.html rendered in headless
Chromium with every host unresolvable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from plumline.pipeline.cli import app
from plumline.pipeline.config import load_config
from plumline.pipeline.dataset_card import export_names
from plumline.pipeline.report import PLOT_CLASS, build_report
from plumline.pipeline.round import run_rounds
from report_browser import chromium, external_refs, ink_fraction, plot_segments, render
from typer.testing import CliRunner

EASY = Path(__file__).resolve().parents[2] / "examples" / "easy_problems.jsonl"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, canned) -> Path:
    """One round on 4 easy training problems, evaluated on 3 held-out ones (problems the canned model
    knows, as files: their licence is unknown to the run)."""
    _, url = canned
    tmp = tmp_path_factory.mktemp("report")
    easy = [line for line in EASY.read_text().splitlines() if line.strip()]
    (tmp / "train.jsonl").write_text("".join(line + "\n" for line in easy[:4]))
    (tmp / "held_out.jsonl").write_text("".join(line + "\n" for line in easy[5:8]))
    cfg_path = tmp / "run.yaml"
    cfg_path.write_text(f"""
name: small
out_dir: {tmp / 'runs'}
sources: [{{path: {tmp / 'train.jsonl'}}}]
policy: {{kind: openai, model: canned, base_url: "{url}", max_retries: 1}}
sampling: {{n: 4, max_tokens: 64, greedy: true}}
tests: {{tests_per_problem: 4, given_tests_role: eval}}
validation: {{oracle: true, agreement: true, min_kept_tests: 1}}
eval: {{sources: [{{path: {tmp / 'held_out.jsonl'}}}], n: 4, k: [1, 2]}}
beam: {{cpu_workers: 2}}
sandbox: {{workers: 1}}
""")
    cfg = load_config(cfg_path)
    run_rounds(cfg, Path(cfg.out_dir) / cfg.name)
    return Path(cfg.out_dir) / cfg.name


@pytest.mark.slow
def test_the_loop_writes_report_html_and_plumline_report_rebuilds_it(run_dir):
    report = run_dir / "report.html"
    assert report.is_file()
    page, ids = build_report(run_dir)
    assert ids == ["plot-pass-ratio", "plot-outcomes", "plot-tests", "plot-pairs", "plot-eval",
                   "plot-stage-time", "plot-tokens"]
    for plot_id in ids:
        assert f'id="{plot_id}"' in page and f"data-plot='{plot_id}'" in page
    assert page.count(f"class='{PLOT_CLASS}'") == len(ids)
    assert external_refs(page) == []  # plotly's JavaScript is inlined; nothing else is linked
    assert "pass@1" in page and "greedy_pass@1" in page  # the eval section has scores
    report.unlink()
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert report.is_file() and report.stat().st_size > 1_000_000  # plotly.js is in the file
    assert CliRunner().invoke(app, ["report", str(run_dir / "nowhere")]).exit_code == 2


@pytest.mark.slow
def test_export_writes_a_folder_load_dataset_reads(run_dir, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "dataset"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--to", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    names = [c["config_name"] for c in header["configs"]]
    assert names and set(names) <= set(export_names()) and "dpo" in names
    assert header["license"] == "other"  # a file source without a licence field: unknown, said plainly
    assert "| unknown |" in card and "licence of a source marked `unknown`" in card
    manifest = json.loads((run_dir / "round-000" / "manifest.json").read_text())
    for name in names:
        ds = load_dataset(str(out), name, split="train")
        assert len(ds) == manifest["counts"][name] > 0
    dpo = load_dataset(str(out), "dpo", split="train")
    assert {"prompt", "chosen", "rejected"} <= set(dpo.column_names)
    assert len(load_dataset(str(out), split="train")) == len(dpo)  # dpo is the default config
    for words in ("canned", manifest["config_hash"], "train.jsonl", "held_out.jsonl",
                  "Decontamination", "DPOTrainer", "KTOTrainer", "load_dataset", "apache-beam"):
        assert words in card, words
    assert (out / "plumline" / "config.yaml").is_file()
    assert (out / "plumline" / "round-000.manifest.json").is_file()
    # A round that is not there: exit 2 with the reason.
    bad = CliRunner().invoke(app, ["export", str(run_dir), "--to", str(tmp_path / "x"), "--round", "7"])
    assert bad.exit_code == 2 and "not finished" in bad.output


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Debian packages chromium and "
                                               "chromium-driver; scripts/setup.sh installs them as root)")
def test_report_renders_offline_in_headless_chromium(run_dir, tmp_path):
    pytest.importorskip("PIL", reason="Pillow decodes the screenshot")
    report = run_dir / "report.html"
    _, ids = build_report(run_dir)
    shown = render(report, tmp_path)
    assert shown.page_requests == [], f"the page made network requests: {shown.page_requests}"
    for plot_id, part in plot_segments(shown.dom, ids).items():
        assert part, f"{plot_id}: no element in the rendered page"
        assert "js-plotly-plot" in part.split(">", 1)[0], f"{plot_id}: plotly did not take the element"
        assert 'class="main-svg"' in part, f"{plot_id}: nothing drawn"
        if plot_id != "plot-eval":  # every other plot has data marks: bars
            assert 'class="point"' in part or 'class="bars"' in part, f"{plot_id}: no bars drawn"
    assert 'class="scatterlayer' in plot_segments(shown.dom, ["plot-eval"])["plot-eval"]
    ink, colours = ink_fraction(shown.screenshot)
    assert ink > 0.05 and colours > 20, (ink, colours)  # not a blank page
