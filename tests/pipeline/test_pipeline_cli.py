"""The plumline command line: help, config inspection, and a bad config stopping before any work."""

from pathlib import Path

from plumline.pipeline.cli import app
from typer.testing import CliRunner

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("run", "demo", "exec", "train", "config"):
        assert cmd in out


def test_config_show_and_fields():
    res = runner.invoke(app, ["config", "show", str(CONFIGS / "demo.yaml"), "--set", "sampling.n=3"])
    assert res.exit_code == 0 and "n: 3" in res.output and "max_pairs_per_problem" in res.output
    res = runner.invoke(app, ["config", "fields", "sampling"])
    assert res.exit_code == 0 and "sampling.temperature" in res.output


def test_bad_config_stops_before_any_work_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"out_dir: {tmp_path / 'runs'}\nsources: [{{path: bundled:easy}}]\nsampling: {{n: 0}}\n")
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "sampling.n" in res.output and "bad.yaml" in res.output
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_unknown_train_method_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["train", "ppo", "--data", str(tmp_path / "x.parquet"), "--model", "m",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "No such command 'ppo'" in res.output
