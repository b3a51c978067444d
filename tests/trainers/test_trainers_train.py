"""Real training runs on CPU: a tiny random Llama, TRL's DPOTrainer / KTOTrainer, a few steps each.
Each checks that the saved folder loads with transformers, that its weights moved, that the loss
fell from its untrained value, and that the Parquet file was not touched."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from plumline.data_schemas.records import DpoChatRow, DpoRow, KtoChatRow, KtoRow
from plumline.trainers import (
    DpoTrainingConfig,
    KtoTrainingConfig,
    NoTrainingData,
    TrainExit,
    TrainingReport,
    train_dpo,
    train_kto,
)
from plumline.trainers.output import NO_WEIGHTS_MARKER, REPORT_NAME, holds_policy, staging_dir
from trainers_data import dpo_chat_rows, dpo_rows, file_sha, kto_chat_rows, kto_rows, write_parquet

pytestmark = pytest.mark.slow

FAST = {"learning_rate": 1e-3, "max_steps": 6, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1, "max_length": 256, "warmup_steps": 0, "logging_steps": 1}


def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _check_trained(before: Path, after: Path, report: TrainingReport, steps: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert report.steps == steps
    assert [p["step"] for p in report.loss_curve] == list(range(1, steps + 1))
    assert all(math.isfinite(p["loss"]) for p in report.loss_curve)
    assert report.versions["trl"] == "1.16.0"
    on_disk = json.loads((after / REPORT_NAME).read_text())
    assert on_disk["steps"] == steps and on_disk["output_dir"] == str(after.resolve())
    assert not staging_dir(after).exists()
    # No checkpoints or tracker folders: just the model, the tokenizer and the report.
    assert not [p for p in after.iterdir() if p.is_dir()]

    model = AutoModelForCausalLM.from_pretrained(after)
    assert model.config.use_cache is True  # a generation-ready policy, as before training
    tok = AutoTokenizer.from_pretrained(after)
    assert tok.chat_template and tok.eos_token
    ids = tok("def add(a, b):", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()

    old, new = _state(before), _state(after)
    assert old.keys() == new.keys()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert len(changed) >= len(old) // 2, f"only {changed} changed"
    assert all(torch.isfinite(v).all() for v in new.values())


@pytest.mark.parametrize("chat", [False, True], ids=["standard", "conversational"])
def test_dpo_trains_and_saves_a_loadable_policy(tiny_model: Path, data_dir: Path, tmp_path: Path, chat: bool):
    rows, cls = (dpo_chat_rows(8), DpoChatRow) if chat else (dpo_rows(8), DpoRow)
    data = write_parquet(data_dir / "dpo.parquet", rows, cls)
    sha = file_sha(data)
    out = tmp_path / "round-000" / "model"
    report = train_dpo([data], tiny_model, out, DpoTrainingConfig(**FAST))
    assert file_sha(data) == sha
    assert report.data_format == ("conversational" if chat else "standard")
    assert report.dataset_rows == report.train_rows == 8
    _check_trained(tiny_model, out, report, 6)
    # Policy == reference at the start, so DPO's first loss is exactly log 2; training lowers it.
    curve = [p["loss"] for p in report.loss_curve]
    assert curve[0] == pytest.approx(math.log(2), abs=1e-4)
    assert curve[-1] < curve[0] - 0.05
    margins = [e["rewards/margins"] for e in report.log_history if "rewards/margins" in e]
    assert margins[-1] > 0  # chosen now more likely than rejected, relative to the reference


@pytest.mark.parametrize("chat", [False, True], ids=["standard", "conversational"])
def test_kto_trains_and_saves_a_loadable_policy(tiny_model: Path, data_dir: Path, tmp_path: Path, chat: bool):
    rows, cls = (kto_chat_rows(8), KtoChatRow) if chat else (kto_rows(8), KtoRow)
    data = write_parquet(data_dir / "kto.parquet", rows, cls)
    sha = file_sha(data)
    out = tmp_path / "model"
    report = train_kto([data], tiny_model, out, KtoTrainingConfig(**FAST))
    assert file_sha(data) == sha
    assert report.extra == {"desirable_rows": 4, "undesirable_rows": 4}
    _check_trained(tiny_model, out, report, 6)
    curve = [p["loss"] for p in report.loss_curve]
    assert curve[-1] < curve[0]


def test_a_trained_policy_is_the_next_rounds_starting_point(tiny_model: Path, data_dir: Path, tmp_path: Path):
    """The online loop: round 1 trains from round 0's output folder (its reference is rebuilt from it)."""
    data = write_parquet(data_dir / "dpo.parquet", dpo_rows(4), DpoRow)
    cfg = DpoTrainingConfig(**{**FAST, "max_steps": 2})
    r0 = tmp_path / "round-000" / "model"
    r1 = tmp_path / "round-001" / "model"
    train_dpo([data], tiny_model, r0, cfg)
    report = train_dpo([data], r0, r1, cfg)
    assert report.model == str(r0.resolve())
    assert report.loss_curve[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    _check_trained(r0, r1, report, 2)
    # Retraining into an existing folder needs overwrite=True, and replaces it whole.
    with pytest.raises(FileExistsError):
        train_dpo([data], r0, r1, cfg)
    train_dpo([data], tiny_model, r1, cfg, overwrite=True)
    assert TrainingReport.read(r1).model == str(tiny_model.resolve())


def test_rows_dropped_by_max_length_give_no_training_data(tiny_model: Path, data_dir: Path, tmp_path: Path):
    data = write_parquet(data_dir / "dpo.parquet", dpo_rows(4), DpoRow)
    out = tmp_path / "model"
    with pytest.raises(NoTrainingData, match="max_length=4"):
        train_dpo([data], tiny_model, out, DpoTrainingConfig(**{**FAST, "max_length": 4}))
    assert not out.exists() and not staging_dir(out).exists()


def test_kto_with_a_single_row_is_no_training_data(tiny_model: Path, data_dir: Path, tmp_path: Path):
    data = write_parquet(data_dir / "kto.parquet", kto_rows(1), KtoRow)
    with pytest.raises(NoTrainingData, match="at least 2 rows"):
        train_kto([data], tiny_model, tmp_path / "model", KtoTrainingConfig(**FAST))


def test_save_false_keeps_only_the_report_marked_no_policy(tiny_model: Path, data_dir: Path, tmp_path: Path):
    data = write_parquet(data_dir / "dpo.parquet", dpo_rows(2), DpoRow)
    out = tmp_path / "model"
    report = train_dpo([data], tiny_model, out, DpoTrainingConfig(**{**FAST, "max_steps": 1, "save": False}))
    assert report.saved is False
    assert sorted(p.name for p in out.iterdir()) == [NO_WEIGHTS_MARKER, REPORT_NAME]
    assert not holds_policy(out)
    # The next round cannot start from it: the message names the cause.
    with pytest.raises(FileNotFoundError, match="save: false"):
        train_dpo([data], out, tmp_path / "next", DpoTrainingConfig(**FAST))


def test_lora_without_peft_is_a_config_error(tiny_model: Path, data_dir: Path, tmp_path: Path):
    try:
        import peft  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("peft is installed; see test_lora_trains_and_merges")
    from plumline.trainers import TrainingConfigError

    data = write_parquet(data_dir / "dpo.parquet", dpo_rows(2), DpoRow)
    with pytest.raises(TrainingConfigError, match="peft"):
        train_dpo([data], tiny_model, tmp_path / "m", DpoTrainingConfig(**FAST, lora={"r": 4}))


def test_lora_trains_and_merges(tiny_model: Path, data_dir: Path, tmp_path: Path):
    pytest.importorskip("peft")
    data = write_parquet(data_dir / "dpo.parquet", dpo_rows(4), DpoRow)
    out = tmp_path / "model"
    cfg = DpoTrainingConfig(**{**FAST, "max_steps": 2, "learning_rate": 1e-2}, lora={"r": 4, "alpha": 8})
    report = train_dpo([data], tiny_model, out, cfg)
    # Merged: a plain folder with the base model's tensor names, no adapter files.
    assert not (out / "adapter_config.json").exists()
    _check_trained(tiny_model, out, report, 2)


@pytest.mark.parametrize("lora,precompute", [(None, False), ({"r": 4, "alpha": 8, "dropout": 0.0}, False),
                                              (None, True)], ids=["full", "lora", "precomputed-reference"])
def test_shared_prefix_dpo_trains_as_the_padded_batch_does(tiny_model: Path, data_dir: Path, tmp_path: Path,
                                                           lora: dict | None, precompute: bool):
    """Same data, same seed: the packed trainer's per-step losses, gradient norms and reward margins are
    the padded trainer's, with fewer tokens through the model (both the policy's and the reference's,
    the latter once before training with precompute_ref_log_probs)."""
    if lora:
        pytest.importorskip("peft")
    rows = [dataclasses.replace(r, chosen=r.chosen + "# ok\n" * (i % 3), rejected=r.rejected + "#\n" * i)
            for i, r in enumerate(dpo_rows(8))]
    data = write_parquet(data_dir / "dpo.parquet", rows, DpoRow)
    reports = {}
    for shared in (False, True):
        cfg = DpoTrainingConfig(**{**FAST, "max_steps": 3, "per_device_train_batch_size": 4}, lora=lora,
                                shared_prefix=shared, precompute_ref_log_probs=precompute)
        reports[shared] = train_dpo([data], tiny_model, tmp_path / f"shared-{shared}", cfg, seed=3)
    keys = ("loss", "grad_norm", "rewards/margins", "logps/chosen", "logps/rejected")
    steps = {s: [e for e in r.log_history if "loss" in e] for s, r in reports.items()}
    assert len(steps[True]) == len(steps[False]) == 3
    # Step 1 (same weights): equal up to float rounding. Later steps are looser: Adam's first updates are
    # near sign(gradient), so rounding noise in a near-zero gradient moves a weight by a whole step.
    for i, (padded, packed) in enumerate(zip(steps[False], steps[True], strict=True)):
        for k in keys:
            # (abs 1e-4: a precomputed reference's rows went through the model in other batches, so the
            # float rounding of its log-probs differs from the policy's by ~1e-5 where the padded path's
            # are bit-equal)
            tolerance = {"rel": 1e-4, "abs": 1e-4} if i == 0 else {"rel": 1e-2, "abs": 1e-3}
            assert packed[k] == pytest.approx(padded[k], **tolerance), (i, k, packed, padded)
    assert reports[False].extra == {}
    packing = reports[True].extra["shared_prefix"]
    # 3 steps x (policy + reference) forwards, every one packed; or 3 policy forwards plus the reference
    # over the 8 rows in batches of 4 (TRL's precompute uses the training batch size)
    forwards = 3 + 2 if precompute else 6
    assert (packing["forwards"], packing["kept_padded"]) == (forwards, 0)
    assert packing["padded_over_packed"] > 1.2


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plumline.trainers", *args], check=False,
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_process_trains_and_reports_exit_codes(tiny_model: Path, data_dir: Path, tmp_path: Path):
    data = write_parquet(data_dir / "kto.parquet", kto_rows(4), KtoRow)
    cfg = tmp_path / "plumline.yaml"
    cfg.write_text("train:\n  kto:\n    per_device_train_batch_size: 2\n    learning_rate: 0.001\n")
    out = tmp_path / "model"
    p = _cli("kto", "--data", str(data), "--model", str(tiny_model), "--out", str(out), "--config", str(cfg),
             "--set", "max_steps=2", "--set", "gradient_accumulation_steps=1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.stdout.strip().count("\n") == 0  # metrics go to the log (stderr), not stdout
    assert summary["steps"] == 2 and summary["output_dir"] == str(out.resolve()) and summary["saved"] is True
    report = TrainingReport.read(out)
    assert report.config["learning_rate"] == 0.001 and report.seed == 0 and "seed" not in report.config
    assert holds_policy(out)

    # The run config layout (dpo/kto blocks with a train section) and --seed.
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text("name: r\nkto:\n  rows:\n    enabled: true\n  train:\n    learning_rate: 0.002\n")
    p = _cli("kto", "--data", str(data), "--model", str(tiny_model), "--out", str(tmp_path / "m1"),
             "--config", str(run_cfg), "--set", "max_steps=1", "--set", "per_device_train_batch_size=2",
             "--seed", "11", cwd=tmp_path)
    assert p.returncode == TrainExit.OK, p.stderr[-3000:]
    report = TrainingReport.read(tmp_path / "m1")
    assert report.seed == 11 and report.config["learning_rate"] == 0.002

    empty = write_parquet(data_dir / "empty.parquet", [], KtoRow)
    p = _cli("kto", "--data", str(empty), "--model", str(tiny_model), "--out", str(tmp_path / "m2"),
             cwd=tmp_path)
    assert p.returncode == TrainExit.NO_DATA and "no rows" in p.stderr

    p = _cli("dpo", "--data", str(data), "--model", str(tiny_model), "--out", str(tmp_path / "m3"),
             cwd=tmp_path)
    assert p.returncode == TrainExit.BAD_INPUT and "missing column" in p.stderr

    p = _cli("dpo", "--data", str(data), "--model", str(tiny_model), "--out", str(tmp_path / "m4"),
             "--set", "beta=-1", cwd=tmp_path)
    assert p.returncode == TrainExit.BAD_INPUT and "beta" in p.stderr


def test_huge_and_unicode_rows_are_truncated_or_dropped(tiny_model: Path, data_dir: Path, tmp_path: Path):
    from dataclasses import replace

    rows = dpo_rows(4)
    rows[1] = replace(rows[1], chosen="def f():\n    return '\u00e9\u4e2d\U0001f600'\n" * 5000)  # ~150k chars
    rows[2] = replace(rows[2], prompt="x = 1\n" * 20000)  # prompt alone fills max_length: TRL drops it
    data = write_parquet(data_dir / "dpo.parquet", rows, DpoRow)
    report = train_dpo([data], tiny_model, tmp_path / "model",
                       DpoTrainingConfig(**{**FAST, "max_steps": 2}))
    assert (report.dataset_rows, report.train_rows) == (4, 3)
    assert all(math.isfinite(p["loss"]) for p in report.loss_curve)
