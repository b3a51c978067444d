"""Config classes, YAML loading and overrides, and the TRL configs they produce (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plumline.trainers import (
    DpoTrainingConfig,
    KtoTrainingConfig,
    LoraSettings,
    TrainingConfigError,
    load_config,
)
from plumline.trainers.config import BaseTrainingConfig, find_section, parse_override


@pytest.mark.parametrize("cls", [DpoTrainingConfig, KtoTrainingConfig, LoraSettings])
def test_every_field_has_a_default_and_a_description(cls):
    cls()  # every field defaulted
    for name, f in cls.model_fields.items():
        assert f.description and len(f.description) > 10, f"{cls.__name__}.{name} lacks a description"
        assert not f.is_required(), f"{cls.__name__}.{name} has no default"


@pytest.mark.parametrize("cls", [DpoTrainingConfig, KtoTrainingConfig, LoraSettings])
def test_unknown_fields_are_rejected(cls):
    with pytest.raises(ValueError, match="betta"):
        cls.model_validate({"betta": 0.2})


@pytest.mark.parametrize("cls", [DpoTrainingConfig, KtoTrainingConfig])
def test_the_seed_is_not_a_config_field(cls):
    """One run seed: the train functions and `plumline train --seed` take it, never the config."""
    with pytest.raises(ValueError, match="seed"):
        cls.model_validate({"seed": 1})
    with pytest.raises(TrainingConfigError, match="seed"):
        cls(extra_args={"seed": 1}).trl_config(Path("/tmp/x"))


def test_save_is_the_field_a_run_config_checks():
    from plumline.trainers import SAVE_FIELD

    assert SAVE_FIELD in DpoTrainingConfig.model_fields and SAVE_FIELD in KtoTrainingConfig.model_fields
    assert DpoTrainingConfig().save is True


def test_dpo_loss_type_accepts_one_or_many_and_rejects_unknown():
    assert DpoTrainingConfig(loss_type="ipo").loss_type == ["ipo"]
    both = DpoTrainingConfig(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    assert both.loss_type == ["sigmoid", "sft"]
    with pytest.raises(ValueError, match="unknown loss_type"):
        DpoTrainingConfig(loss_type="dpo_but_better")
    with pytest.raises(ValueError):
        DpoTrainingConfig(loss_type=[])


def test_kto_needs_a_batch_of_two_for_its_kl_term():
    with pytest.raises(ValueError, match=">= 2"):
        KtoTrainingConfig(per_device_train_batch_size=1)
    # apo_zero_unpaired has no KL term: a batch of one is fine.
    assert KtoTrainingConfig(loss_type="apo_zero_unpaired", per_device_train_batch_size=1)
    with pytest.raises(ValueError):
        KtoTrainingConfig(loss_type="dpo")


@pytest.mark.parametrize("bad", [{"beta": 0}, {"beta": -1}, {"learning_rate": 0}, {"epochs": 0},
                                 {"per_device_train_batch_size": 0}, {"warmup_steps": 2.5},
                                 {"lora": {"r": 0}}, {"max_length": 1}])
def test_out_of_range_values_are_rejected(bad):
    with pytest.raises(ValueError):
        DpoTrainingConfig.model_validate(bad)


def test_parse_override_reads_yaml_values():
    assert parse_override("beta=0.25") == ("beta", 0.25)
    assert parse_override("lora.target_modules=[q_proj, v_proj]") == ("lora.target_modules",
                                                                      ["q_proj", "v_proj"])
    assert parse_override("lora=null") == ("lora", None)
    assert parse_override("lr_scheduler_type=cosine") == ("lr_scheduler_type", "cosine")
    for bad in ["beta", "=1", "a..b=1", "beta=[unclosed"]:
        with pytest.raises(TrainingConfigError):
            parse_override(bad)


@pytest.mark.parametrize("text", [
    "beta: 0.3\nepochs: 2\n",  # the section itself
    "dpo:\n  beta: 0.3\n  epochs: 2\nkto:\n  beta: 9\n",  # a file with one section per method
    "run: x\ntrain:\n  dpo:\n    beta: 0.3\n    epochs: 2\n",  # an older full config
    "name: x\ndpo:\n  pairs:\n    strategy: plum\n  train:\n    beta: 0.3\n    epochs: 2\n",  # a run config
])
def test_load_config_finds_the_section(tmp_path: Path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    cfg = load_config(DpoTrainingConfig, "dpo", p)
    assert (cfg.beta, cfg.epochs) == (0.3, 2.0)


def test_find_section_takes_the_run_configs_train_block():
    run = {"dpo": {"pairs": {"max_pairs_per_problem": 3}, "train": {"beta": 0.4}}, "kto": {"train": {}}}
    assert find_section(run, "dpo") == {"beta": 0.4}
    assert find_section({"beta": 0.2}, "dpo") == {"beta": 0.2}


def test_overrides_win_and_build_nested_sections(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("beta: 0.3\n")
    cfg = load_config(DpoTrainingConfig, "dpo", p,
                      ["beta=0.5", "lora.r=8", "extra_args.weight_decay=0.01", "loss_type=ipo"])
    assert cfg.beta == 0.5
    assert cfg.lora == LoraSettings(r=8)
    assert cfg.extra_args == {"weight_decay": 0.01}
    assert cfg.loss_type == ["ipo"]


def test_config_errors_name_the_field_and_the_file(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("beta: -1\nlearnin_rate: 3\n")
    with pytest.raises(TrainingConfigError) as e:
        load_config(DpoTrainingConfig, "dpo", p)
    msg = str(e.value)
    assert "beta" in msg and "learnin_rate" in msg and str(p) in msg
    with pytest.raises(TrainingConfigError, match="does not exist"):
        load_config(DpoTrainingConfig, "dpo", tmp_path / "nope.yaml")
    p.write_text("- a\n- b\n")
    with pytest.raises(TrainingConfigError, match="mapping"):
        load_config(DpoTrainingConfig, "dpo", p)
    p.write_text("beta: [1\n")
    with pytest.raises(TrainingConfigError, match="YAML"):
        load_config(DpoTrainingConfig, "dpo", p)
    with pytest.raises(TrainingConfigError, match="not a section"):
        load_config(DpoTrainingConfig, "dpo", None, ["beta=1", "beta.x=2"])


def test_empty_file_gives_defaults(tmp_path: Path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(KtoTrainingConfig, "kto", p) == KtoTrainingConfig()


def test_device_defaults_follow_the_hardware():
    import torch

    dev = BaseTrainingConfig().resolved_device()
    if torch.cuda.is_available():
        assert dev["use_cpu"] is False and dev["gradient_checkpointing"] is True
    else:
        # TRL's own defaults (bf16, gradient checkpointing) are wrong on a CPU machine; bf16 stays on
        # only where the CPU has native bf16 (plumline.llm.hardware).
        from plumline.llm.hardware import cpu_info
        bf16 = cpu_info().fast_bf16
        assert dev == {"use_cpu": True, "bf16": bf16, "fp16": False, "gradient_checkpointing": False}
    forced = BaseTrainingConfig(use_cpu=True, bf16=False, gradient_checkpointing=True).resolved_device()
    assert forced == {"use_cpu": True, "bf16": False, "fp16": False, "gradient_checkpointing": True}


def test_trl_configs_carry_the_knobs(tmp_path: Path):
    import torch
    from trl import DPOConfig, KTOConfig

    d = DpoTrainingConfig(beta=0.3, learning_rate=2e-5, epochs=2, per_device_train_batch_size=3,
                          gradient_accumulation_steps=5, max_length=321, loss_type="ipo",
                          warmup_steps=3, extra_args={"weight_decay": 0.01}).trl_config(tmp_path, seed=7)
    assert isinstance(d, DPOConfig)
    assert (d.beta, d.learning_rate, d.num_train_epochs, d.per_device_train_batch_size,
            d.gradient_accumulation_steps, d.max_length, d.loss_type, d.seed, d.data_seed, d.warmup_steps,
            d.weight_decay) == (0.3, 2e-5, 2.0, 3, 5, 321, ["ipo"], 7, 7, 3, 0.01)
    assert d.save_strategy == "no"
    if not torch.cuda.is_available():
        from plumline.llm.hardware import cpu_info
        assert d.use_cpu is True and d.bf16 is cpu_info().fast_bf16 and d.gradient_checkpointing is False
    k = KtoTrainingConfig(desirable_weight=1.5, undesirable_weight=0.5).trl_config(tmp_path)
    assert isinstance(k, KTOConfig)
    assert (k.loss_type, k.desirable_weight, k.undesirable_weight) == ("kto", 1.5, 0.5)


def test_unknown_extra_args_are_named(tmp_path: Path):
    with pytest.raises(TrainingConfigError, match="not_a_trl_field"):
        DpoTrainingConfig(extra_args={"not_a_trl_field": 1}).trl_config(tmp_path)
    with pytest.raises(TrainingConfigError, match="output_dir"):
        DpoTrainingConfig(extra_args={"output_dir": "/elsewhere"}).trl_config(tmp_path)
    with pytest.raises(TrainingConfigError, match="rejected"):
        DpoTrainingConfig(extra_args={"lr_scheduler_type": "no_such_schedule"}).trl_config(tmp_path)


def test_importing_configs_does_not_load_torch():
    """The pipeline's YAML config imports these classes; that must not pull in torch or TRL."""
    import subprocess
    import sys

    code = ("import sys; from plumline.trainers import DpoTrainingConfig, KtoTrainingConfig, train_command; "
            "import plumline.trainers.cli; "
            "DpoTrainingConfig(); print(sorted(m for m in ('torch', 'trl', 'transformers', 'datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_train_command_returns_exit_codes_for_bad_input(tmp_path: Path, caplog):
    from plumline.trainers import TrainExit, train_command

    assert train_command("ppo", [], "m", tmp_path / "o") == TrainExit.BAD_INPUT
    assert train_command("dpo", [tmp_path / "x.parquet"], "m", tmp_path / "o", None, ["beta=-1"]) == 2
    assert "beta" in caplog.text
    assert train_command("kto", [tmp_path / "missing.parquet"], "m", tmp_path / "o") == TrainExit.BAD_INPUT
    assert "does not exist" in caplog.text
    assert train_command("kto", [], "m", tmp_path / "o") == TrainExit.NO_DATA == 3
    assert not (tmp_path / "o").exists()


def test_exit_codes_are_the_documented_numbers():
    from plumline.trainers import TrainExit

    assert [(c.name, int(c)) for c in TrainExit] == [("OK", 0), ("FAILED", 1), ("BAD_INPUT", 2),
                                                     ("NO_DATA", 3)]


def _typer(*args: str):
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_train_help_describes_every_option_and_the_exit_codes(method: str):
    r = _typer("train", method, "--help")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    for opt in ("--data", "--model", "--out", "--config", "--set", "--seed", "--overwrite", "--log-level"):
        assert opt in text
    assert "Exit codes: 0 trained" in text and "3 no training rows" in text
    top = _typer("train", "--help")
    assert "dpo" in top.output and "kto" in top.output


def test_train_cli_exit_codes(tmp_path: Path):
    """Through the typer app: usage errors and bad input are 2, no data is 3 (nothing trains here)."""
    r = _typer("train", "ppo", "--data", "x", "--model", "m", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2  # no such command
    r = _typer("train", "dpo", "--model", "m", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2  # --data missing
    r = _typer("train", "kto", "--data", str(tmp_path / "nope.parquet"), "--model", "m",
               "--out", str(tmp_path / "o"), "--seed", "5")
    assert r.exit_code == 2
    r = _typer("train", "dpo", "--data", str(tmp_path / "x.parquet"), "--model", "m",
               "--out", str(tmp_path / "o"), "--set", "seed=3")
    assert r.exit_code == 2  # seed is not a config field: --seed is the only way in


def test_python_m_trainers_runs_the_same_app():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "plumline.trainers", "--help"], check=False,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "dpo" in out.stdout and "kto" in out.stdout and "Exit codes" in out.stdout


@pytest.mark.parametrize(("warmup", "max_steps", "expected"), [
    (0.1, 4, 0),      # ceil(0.4) = 1 step: it would train at learning rate 0
    (0.1, 10, 0),     # exactly one step
    (0.1, 11, 0.1),   # two steps: the share goes to transformers as it is
    (0.25, 8, 0.25),
    (0.1, -1, 0.1),   # epochs decide the step count: unknown here
    (1, 4, 0),        # one step asked for by count: the same no-op
    (3, 4, 3),
    (0.0, 4, 0.0),
])
def test_a_warmup_of_one_step_is_none(warmup, max_steps, expected):
    from plumline.trainers.config import transformers_warmup

    assert transformers_warmup(warmup, max_steps) == expected
    cfg = DpoTrainingConfig(warmup_steps=warmup, max_steps=max_steps)
    assert cfg.common_trl_kwargs(Path("/tmp/x"), 0)["warmup_steps"] == expected
