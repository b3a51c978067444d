"""CodeRL's critic: its config, the classifier helpers, bad data, a real training run of a tiny random
Llama on CPU (train, save, reload, score) and the `plumline train critic` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from plumline.data_schemas.records import CriticRow
from plumline.trainers import TrainExit, TrainingConfigError, TrainingReport, load_config
from plumline.trainers.classifier import (
    accuracy_report,
    balanced_weights,
    encode,
    join_prompt_code,
    split_eval,
    weighted_loss,
)
from plumline.trainers.critic import (
    CRITIC_CLASSES,
    PASSED_CLASS,
    CriticScorer,
    CriticTrainingConfig,
    critic_scores,
    train_critic,
)
from plumline.trainers.output import REPORT_NAME, holds_policy, staging_dir
from trainers_data import file_sha, write_parquet

# A trivially separable toy set: each class has its own last line (the critic reads the last token).
MARKERS = ("    return (((", "    raise ValueError", "    return None", "    return a + b")
OUTCOMES = ("compile_error", "runtime_error", "failed", "passed")
# 30 steps at 1e-3 reached accuracy 1.0 (held-out and training rows) for seeds 0-3; 12 steps did not.
FAST = {"learning_rate": 1e-3, "max_steps": 30, "per_device_train_batch_size": 8, "warmup_steps": 0,
        "max_length": 64, "bf16": False, "logging_steps": 1}


def critic_rows(n: int = 32, classes: tuple[int, ...] = (0, 1, 2, 3)) -> list[CriticRow]:
    rows = []
    for i in range(n):
        c = classes[i % len(classes)]
        rows.append(CriticRow(
            prompt=f"Write add(a, b) returning the sum. (variant {i})\n",
            code=f"def add(a, b):\n    x = {i}\n{MARKERS[c]}\n", outcome=OUTCOMES[c], coderl_class=c,
            coderl_return=(-1.0, -0.6, -0.3, 1.0)[c], error_type=None, error_line=None,
            pass_ratio=1.0 if c == 3 else 0.0, problem_id=f"p{i // 2}", sample_id=f"s{i}", round=0))
    return rows


# ------------------------------------------------------------------------------------------ config


def test_config_fields_are_documented_and_shared_with_the_other_trainers():
    from plumline.trainers.config import SAVE_FIELD, BaseTrainingConfig

    cfg = CriticTrainingConfig()
    assert isinstance(cfg, BaseTrainingConfig) and SAVE_FIELD in CriticTrainingConfig.model_fields
    for name, f in CriticTrainingConfig.model_fields.items():
        assert f.description and len(f.description) > 10, name
        assert not f.is_required(), name
    # No reference model and no TRL tokenizing processes: those knobs would do nothing here.
    for knob in ("beta", "dataset_num_proc", "seed", "betta"):
        with pytest.raises(ValueError, match=knob):
            CriticTrainingConfig.model_validate({knob: 1})


def test_class_weights_are_none_balanced_or_four_numbers():
    assert CriticTrainingConfig(class_weights="balanced").class_weights == "balanced"
    assert CriticTrainingConfig(class_weights=[1, 2, 0, 1]).class_weights == [1.0, 2.0, 0.0, 1.0]
    for bad in ([1.0, 2.0], [1, 1, 1, -1], [0, 0, 0, 0], "inverse"):
        with pytest.raises(ValueError):
            CriticTrainingConfig(class_weights=bad)


def test_training_args_carry_the_knobs_and_the_device_rule(tmp_path: Path):
    import torch
    from transformers import TrainingArguments

    args = CriticTrainingConfig(learning_rate=3e-5, epochs=2, per_device_train_batch_size=3,
                                per_device_eval_batch_size=5, gradient_accumulation_steps=2, warmup_steps=4,
                                weight_decay=0.01, extra_args={"max_grad_norm": 0.5}).trl_config(tmp_path, 7)
    assert isinstance(args, TrainingArguments)
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size,
            args.per_device_eval_batch_size, args.gradient_accumulation_steps, args.warmup_steps,
            args.weight_decay, args.max_grad_norm, args.seed, args.data_seed) == (
        3e-5, 2.0, 3, 5, 2, 4, 0.01, 0.5, 7, 7)
    assert args.save_strategy == "no" and args.report_to == [] and args.remove_unused_columns is False
    if not torch.cuda.is_available():
        from plumline.llm.hardware import cpu_info

        assert args.use_cpu is True and args.bf16 is cpu_info().fast_bf16
    with pytest.raises(TrainingConfigError, match="not_a_field"):
        CriticTrainingConfig(extra_args={"not_a_field": 1}).trl_config(tmp_path)
    with pytest.raises(TrainingConfigError, match="seed"):
        CriticTrainingConfig(extra_args={"seed": 1}).trl_config(tmp_path)


def test_the_run_configs_critic_train_section_is_found(tmp_path: Path):
    run = tmp_path / "run.yaml"
    run.write_text("name: r\ncritic:\n  rows: {dedupe: false}\n  train:\n    learning_rate: 0.001\n"
                   "    class_weights: balanced\n")
    cfg = load_config(CriticTrainingConfig, "critic", run, ["eval_fraction=0.2"])
    assert (cfg.learning_rate, cfg.class_weights, cfg.eval_fraction) == (0.001, "balanced", 0.2)


# ------------------------------------------------------------------------------------------ helpers


def test_split_eval_holds_out_whole_groups_seeded_and_keeps_training_rows():
    groups = [f"p{i // 3}" for i in range(30)]
    train, ev, how = split_eval(30, 0.2, seed=1, groups=groups)
    assert how == "group" and sorted(train + ev) == list(range(30))
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in ev})  # no problem on both sides
    assert 6 <= len(ev) <= 9 and (train, ev) == split_eval(30, 0.2, seed=1, groups=groups)[:2]
    assert split_eval(30, 0.2, seed=2, groups=groups)[1] != ev
    assert split_eval(30, 0.0, seed=1, groups=groups) == (list(range(30)), [], "none")
    assert split_eval(1, 0.5, seed=1) == ([0], [], "none")
    train, ev, how = split_eval(4, 0.9, seed=0, groups=["a"] * 4)  # one problem: rows, one kept to train
    assert how == "row" and len(train) == 1 and len(ev) == 3
    assert len(split_eval(3, 0.9, seed=0, groups=["a", "b", "c"])[0]) >= 1


def test_balanced_weights_and_the_weighted_loss():
    import torch
    import torch.nn.functional as F

    assert balanced_weights([6, 2, 0, 4]) == [round(12 / 18, 6), 2.0, 1.0, 1.0]
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.0, 3.0]])
    labels = torch.tensor([0, 3, 1])
    plain = weighted_loss(None)({"logits": logits}, labels)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
    w = [1.0, 3.0, 1.0, 0.5]
    # sum of weighted terms over the items of the (accumulated) batch
    expected = (F.cross_entropy(logits, labels, weight=torch.tensor(w), reduction="sum") / 6).item()
    got = weighted_loss(w)({"logits": logits}, labels, num_items_in_batch=6).item()
    assert got == pytest.approx(expected)


def test_accuracy_report_per_class():
    rep = accuracy_report([0, 0, 1, 3, 3, 3], [0, 1, 1, 3, 3, 0], CRITIC_CLASSES)
    assert rep["accuracy"] == pytest.approx(4 / 6, abs=1e-6) and rep["rows"] == 6
    assert rep["per_class_accuracy"] == {"compile_error": 0.5, "runtime_error": 1.0, "failed_tests": None,
                                         "passed": pytest.approx(2 / 3, abs=1e-6)}
    assert rep["balanced_accuracy"] == pytest.approx((0.5 + 1 + 2 / 3) / 3, abs=1e-6)
    assert rep["confusion"][3] == [1, 0, 0, 2] and rep["rows_per_class"]["failed_tests"] == 0


def test_long_rows_lose_the_start_of_the_prompt_not_the_end_of_the_program(tiny_model: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    code = "def add(a, b):\n    return a + b  # END\n"
    text = join_prompt_code("word " * 500, code)
    assert join_prompt_code("P", "c") == "P\nc" and join_prompt_code("P\n", "c") == "P\nc"
    ids = encode(tok, [text, code], max_length=32)
    assert len(ids[0]) == 32 and tok.decode(ids[0]).endswith("# END\n")
    assert ids[1] == tok(code)["input_ids"]  # short rows are untouched
    assert tok.truncation_side == "right"  # the tokenizer is left as it was


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("change, needle", [
    ({"drop": "coderl_class"}, "missing column(s) ['coderl_class']"),
    ({"drop": "code"}, "missing column(s) ['code']"),
    ({"coderl_class": 4}, "row 1: column 'coderl_class' must be a CodeRL class 0-3, got 4"),
    ({"coderl_class": -1}, "row 1: column 'coderl_class' must be a CodeRL class 0-3, got -1"),
    ({"coderl_class": None}, "row 1: column 'coderl_class' must be a CodeRL class 0-3, got None"),
    ({"code": "  "}, "row 1: column 'code' is empty"),
])
def test_bad_rows_are_a_clear_bad_input_error(tiny_model: Path, tmp_path: Path, caplog, change: dict,
                                              needle: str):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from plumline.trainers.cli import train_command

    rows = [r.to_dict() for r in critic_rows(4)]
    if "drop" in change:
        rows = [{k: v for k, v in r.items() if k != change["drop"]} for r in rows]
    else:
        rows[1].update(change)
    data = tmp_path / "critic.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    out = tmp_path / "critic"
    assert train_command("critic", [data], str(tiny_model), out) == TrainExit.BAD_INPUT
    assert needle in caplog.text and str(data) in caplog.text
    assert not out.exists() and not staging_dir(out).exists()


def test_no_rows_a_reference_model_or_a_policy_folder_as_critic(tiny_model: Path, tmp_path: Path, caplog):
    from plumline.trainers.cli import train_command

    empty = write_parquet(tmp_path / "empty.parquet", [], CriticRow)
    assert train_command("critic", [empty], str(tiny_model), tmp_path / "o") == TrainExit.NO_DATA
    data = write_parquet(tmp_path / "critic.parquet", critic_rows(4), CriticRow)
    assert train_command("critic", [data], str(tiny_model), tmp_path / "o", None, [], False, 0,
                         str(tiny_model)) == TrainExit.BAD_INPUT
    assert "--ref-model does not apply to the critic" in caplog.text
    assert train_command("critic", [data], str(tiny_model), tmp_path / "o", None,
                         ["class_weights=[1, 2]"]) == TrainExit.BAD_INPUT
    with pytest.raises(ValueError, match="is not a critic"):
        CriticScorer(tiny_model)  # a causal LM, not a trained critic
    with pytest.raises(FileNotFoundError):
        critic_scores(tmp_path / "nowhere", ["p"], ["c"])


# ------------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_critic_trains_saves_reloads_and_scores(tiny_model: Path, tmp_path: Path):
    rows = critic_rows(32)
    data = write_parquet(tmp_path / "critic.parquet", rows, CriticRow)
    sha = file_sha(data)
    out = tmp_path / "critic"
    report = train_critic([data], tiny_model, out, CriticTrainingConfig(**FAST, eval_fraction=0.25), seed=0)
    assert file_sha(data) == sha
    assert report.method == "critic" and report.steps == 30 and report.saved and holds_policy(out)
    assert (report.dataset_rows, report.train_rows) == (32, 24)
    curve = [p["loss"] for p in report.loss_curve]
    assert len(curve) == 30 and all(math.isfinite(x) for x in curve)
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.3  # it learned
    extra = report.extra
    assert extra["classes"] == list(CRITIC_CLASSES) and extra["eval_split"] == "group"
    assert sum(extra["train_rows_per_class"].values()) == 24 and extra["class_weights"] is None
    ev = extra["eval"]
    assert ev["rows"] == 8 and set(ev["per_class_accuracy"]) == set(CRITIC_CLASSES)
    assert ev["accuracy"] > 0.5  # chance is 0.25; held-out problems
    assert TrainingReport.read(out).extra["eval"] == ev
    summary = report.summary()["eval"]  # the command's one-line JSON: no confusion matrix
    assert "confusion" not in summary and summary["accuracy"] == ev["accuracy"]
    assert not staging_dir(out).exists() and not [p for p in out.iterdir() if p.is_dir()]

    # Reload: a sequence classifier over the four classes, with its pad token.
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["id2label"] == {str(i): n for i, n in enumerate(CRITIC_CLASSES)}
    assert config["pad_token_id"] is not None

    prompts, codes = [r.prompt for r in rows], [r.code for r in rows]
    scores = critic_scores(out, prompts, codes, batch_size=5)
    assert len(scores) == 32 and all(len(s) == 4 for s in scores)
    assert all(abs(sum(s) - 1.0) < 1e-4 and min(s) >= 0.0 for s in scores)
    predicted = [max(range(4), key=s.__getitem__) for s in scores]
    accuracy = sum(p == r.coderl_class for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy > 0.5, (accuracy, predicted)
    passing = [s[PASSED_CLASS] for s, r in zip(scores, rows) if r.coderl_class == PASSED_CLASS]
    failing = [s[PASSED_CLASS] for s, r in zip(scores, rows) if r.coderl_class != PASSED_CLASS]
    assert sum(passing) / len(passing) > sum(failing) / len(failing)  # reranking prefers passing programs

    # Batching and order do not change a program's scores; one load scores many batches.
    scorer = CriticScorer(out)
    assert scorer.max_length == 64  # taken from the training report
    alone = scorer.scores(prompts[3:4], codes[3:4])
    assert alone[0] == pytest.approx(scores[3], abs=1e-3)
    backwards = scorer.scores(prompts[::-1], codes[::-1], batch_size=32)[::-1]
    assert max(abs(x - y) for a, b in zip(backwards, scores) for x, y in zip(a, b)) < 1e-3
    assert scorer.scores([], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 programs"):
        scorer.scores(prompts[:2], codes[:1])


@pytest.mark.slow
def test_lora_critic_trains_its_new_head_and_saves_a_plain_classifier(tiny_model: Path, tmp_path: Path):
    pytest.importorskip("peft")
    rows = critic_rows(32)
    data = write_parquet(tmp_path / "critic.parquet", rows, CriticRow)
    out = tmp_path / "critic"
    cfg = CriticTrainingConfig(**{**FAST, "learning_rate": 3e-3}, lora={"r": 8, "alpha": 16})
    train_critic([data], tiny_model, out, cfg)
    assert not (out / "adapter_config.json").exists()  # merged: loads without peft
    # The head is not a LoRA target but must train (and be saved) beside the adapters.
    scores = critic_scores(out, [r.prompt for r in rows], [r.code for r in rows])
    accuracy = sum(max(range(4), key=s.__getitem__) == r.coderl_class for s, r in zip(scores, rows)) / 32
    assert accuracy > 0.5


@pytest.mark.slow
def test_train_critic_command_with_run_config_overrides_and_class_weights(tiny_model: Path, tmp_path: Path):
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    data = write_parquet(tmp_path / "critic.parquet", critic_rows(8, classes=(0, 3, 3, 3)), CriticRow)
    run = tmp_path / "run.yaml"
    run.write_text("name: r\ncritic:\n  train:\n    class_weights: balanced\n    max_length: 48\n"
                   "    bf16: false\n")
    out = tmp_path / "critic"
    res = CliRunner().invoke(app, ["train", "critic", "--data", str(data), "--model", str(tiny_model),
                                   "--out", str(out), "--config", str(run), "--set", "max_steps=1",
                                   "--seed", "3"])
    assert res.exit_code == TrainExit.OK, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 1 and summary["saved"] is True and "eval" not in summary
    report = TrainingReport.read(out)
    assert report.seed == 3 and report.config["max_length"] == 48 and (out / REPORT_NAME).is_file()
    # 2 rows of class 0 and 6 of class 3: the rare class weighs 3x the common one.
    assert report.extra["train_rows_per_class"] == {"compile_error": 2, "runtime_error": 0, "failed_tests": 0,
                                                    "passed": 6}
    assert report.extra["class_weights"] == [2.0, 1.0, 1.0, pytest.approx(2 / 3, abs=1e-6)]

    res = CliRunner().invoke(app, ["train", "critic", "--help"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "outcome class" in text and "Exit codes: 0 trained" in text
