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


def test_the_summary_points_at_the_last_round_with_data_and_fits_80_columns(tmp_path, capsys):
    """After the last round, an eval-only round scores the final model: it has no dataset, so the
    summary names the last round that has one; the table fits a plain 80-column terminal."""
    from plumline.pipeline.cli import _summary

    data = {"counts": {"problems": 40, "dpo": 52}, "samples": {"total": 200},
            "executions": {"pass_rate": 0.145}, "tests": {"kept": 1847, "total": 1847}, "kto": {"rows": 181},
            "errors": {"total": 0}, "eval": {"greedy_pass@1": 0.08, "pass@1": 0.08}}
    manifests = [{"round": 0, **data}, {"round": 1, **data},
                 {"round": 2, "eval_only": True, "errors": {"total": 1},
                  "eval": {"greedy_pass@1": 0.12, "pass@1": 0.1}}]
    _summary(tmp_path, manifests)
    out = capsys.readouterr().out
    assert f"dataset:  {tmp_path / 'round-001' / 'dpo.parquet'}" in out
    table = out.split("dataset:")[0]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "…" not in table and "(eval)" in table and "12.0%" in table


def test_a_message_naming_a_long_path_is_one_line(tmp_path):
    """Errors are never hard-wrapped: a path in one is copied or grepped whole, whatever the width."""
    folder = tmp_path / ("a-run-folder-with-a-long-name-" * 4)
    folder.mkdir()
    res = runner.invoke(app, ["validate", str(folder)])
    assert res.exit_code == 2
    assert f"not a run folder: {folder} has no config.yaml" in res.output.splitlines()
