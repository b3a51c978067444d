"""The PRM trainer, its scoring API and the dense rewards: step splitting, label placement and
truncation on the tiny tokenizer, data checks, the reward formula by hand, and one real training run
of the tiny Llama on a separable toy set (saved, reloaded, scored, rewards written)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from plumline.data_schemas.base import from_table, to_table
from plumline.data_schemas.records import DenseRewardRow, PrmRow, Sample
from plumline.data_schemas.steps import join_steps, split_steps
from plumline.trainers import TrainExit, TrainingConfigError, TrainingDataError, TrainingReport
from plumline.trainers.classifier import split_eval
from plumline.trainers.cli import TRAINERS, rewards_command, train_command
from plumline.trainers.prm import (
    IGNORE_INDEX,
    PrmTrainingConfig,
    aggregate,
    as_dataset,
    check_prm_rows,
    encode_rows,
    encode_steps,
    prm_step_scores,
)
from plumline.trainers.rewards import dense_rewards

# --------------------------------------------------------------------------- steps


def test_blank_and_comment_lines_join_the_next_code_line_and_trailing_ones_the_last():
    code = "# add two numbers\ndef add(a, b):\n\n    # the sum\n    return a + b\n# done\n\n"
    assert split_steps(code) == ["# add two numbers\ndef add(a, b):",
                                 "\n    # the sum\n    return a + b\n# done"]
    assert split_steps("x = 1\ny = 2\n") == ["x = 1", "y = 2"]
    assert split_steps("") == [] and split_steps("  \n\n") == []
    assert split_steps("# only a comment\n") == ["# only a comment"]


_lines = st.lists(st.sampled_from(["", "   ", "# c", "  # c", "x = 1", "    return x", "if a:", "#"]),
                  max_size=12)


@given(_lines)
def test_steps_rebuild_the_program_and_each_holds_one_code_line(lines: list[str]):
    code = "\n".join(lines)
    steps = split_steps(code)
    assert join_steps(steps) == code.rstrip()
    code_lines = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if code_lines:
        assert len(steps) == len(code_lines)
        for step in steps:
            assert sum(1 for ln in step.split("\n") if ln.strip() and not ln.strip().startswith("#")) == 1


# --------------------------------------------------------------------------- tokenization


@pytest.fixture(scope="module")
def tok(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _n(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_each_label_sits_on_its_steps_last_token_the_separator(tok):
    prompt, steps = "Write add.\n", ["def add(a, b):", "    return a - b"]
    enc = encode_steps(tok, prompt, steps, [True, False], step_separator="\n")
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert len(newline) == 1
    # [BOS] prompt | step 1, "\n" | step 2, "\n"
    first = 1 + _n(tok, prompt) + _n(tok, steps[0])
    second = first + 1 + _n(tok, steps[1])
    assert enc.step_ends == [first, second] and len(enc.input_ids) == second + 1
    assert enc.input_ids[0] == tok.bos_token_id
    assert enc.input_ids[first] == enc.input_ids[second] == newline[0]
    assert [i for i, v in enumerate(enc.labels) if v != IGNORE_INDEX] == [first, second]
    assert enc.labels[first] == 1 and enc.labels[second] == 0
    assert tok.decode(enc.input_ids[1:first + 1]) == prompt + steps[0] + "\n"
    assert enc.dropped_steps == 0
    # Scoring: same positions, no labels.
    unlabelled = encode_steps(tok, prompt, steps, step_separator="\n")
    assert unlabelled.step_ends == enc.step_ends and set(unlabelled.labels) == {IGNORE_INDEX}


def test_bos_is_not_doubled_and_a_custom_separator_is_used(tok):
    chat = "<|im_start|>user\nWrite add.<|im_end|>\n<|im_start|>assistant\n"
    enc = encode_steps(tok, chat, ["x = 1"], [True], step_separator="\n\n")
    assert enc.input_ids[:2] != [tok.bos_token_id, tok.bos_token_id]
    assert enc.input_ids.count(tok.bos_token_id) == 2  # the template's own two <|im_start|>
    sep = tok("\n\n", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[-len(sep):] == sep and enc.step_ends == [len(enc.input_ids) - 1]


def test_truncation_drops_whole_trailing_steps(tok):
    prompt, steps = "Write add.\n", ["x = 1", "y = x + 1", "return y"]
    full = encode_steps(tok, prompt, steps, [True, True, False])
    for keep in (1, 2):
        limit = full.step_ends[keep - 1] + 1  # exactly room for `keep` steps
        for max_length in (limit, full.step_ends[keep]):  # and one token short of the next step
            enc = encode_steps(tok, prompt, steps, [True, True, False], max_length=max_length)
            assert enc.step_ends == full.step_ends[:keep] and enc.dropped_steps == 3 - keep
            assert enc.input_ids == full.input_ids[:limit] and enc.labels == full.labels[:limit]
            assert enc.labels[-1] != IGNORE_INDEX  # the last kept token is a label, never a cut step
    none = encode_steps(tok, prompt, steps, [True, True, False], max_length=full.step_ends[0])
    assert none.step_ends == [] and none.dropped_steps == 3


def test_the_training_rows_keep_ignored_labels(tok):
    """Regression: a ``datasets.map`` over the bool ``labels`` column cast -100 to True (every token
    trained as a good step); the rows must reach the Trainer as ints."""
    rows = [("P\n", ["x = 1", "y = 2"], [True, False]), ("P\n" * 400, ["x = 1"], [True]),
            ("P\n" * 20, ["x = 1", "y = 2 " * 30], [True, True])]
    encoded, stats = encode_rows(tok, rows, PrmTrainingConfig(max_length=64))
    assert stats == {"rows_dropped_by_max_length": 1, "rows_truncated": 1, "steps_dropped_by_max_length": 2}
    ds = as_dataset(encoded)
    assert len(ds) == 2 and ds.features["labels"].feature.dtype == "int64"
    labels = ds[0]["labels"]
    assert sorted(v for v in labels if v != IGNORE_INDEX) == [0, 1]
    assert labels.count(IGNORE_INDEX) == len(labels) - 2


# --------------------------------------------------------------------------- data checks


def _row(**kw) -> dict:
    row = {"prompt": "Write add.\n", "completions": ["def add(a, b):", "    return a + b"],
           "labels": [True, True], "problem_id": "p0", "sample_id": "s0"}
    row.update(kw)
    return row


@pytest.mark.parametrize(("bad", "needle"), [
    ({"labels": [True]}, "labels has 1 values but completions has 2 steps"),
    ({"completions": [], "labels": []}, "completions must be a non-empty list"),
    ({"completions": ["x = 1", "  "]}, "step 1 of completions is empty"),
    ({"labels": [True, None]}, "label 1 must be a bool"),
    ({"prompt": None}, "prompt must be a string"),
])
def test_bad_rows_are_named(bad: dict, needle: str):
    import datasets

    ds = datasets.Dataset.from_list([_row(), _row(sample_id="s-bad", **bad)])
    with pytest.raises(TrainingDataError) as err:
        check_prm_rows(ds, "prm.parquet")
    assert needle in str(err.value) and "prm.parquet: row 1 (sample_id s-bad)" in str(err.value)


def test_missing_columns_name_the_prm_export():
    import datasets

    with pytest.raises(TrainingDataError, match="missing column.*labels"):
        check_prm_rows(datasets.Dataset.from_list([{"prompt": "p", "completions": ["x"]}]), "f")


def _write(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_bad_data_gets_the_exit_codes_of_dpo_and_kto(tiny_model: Path, data_dir: Path, tmp_path: Path):
    bad = _write(data_dir / "bad.parquet", [_row(), _row(labels=[True, False, True])])
    out = tmp_path / "prm"
    assert train_command("prm", [bad], str(tiny_model), out) == TrainExit.BAD_INPUT == 2
    assert not out.exists()
    empty = data_dir / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([_row()]).slice(0, 0), empty)
    assert train_command("prm", [empty], str(tiny_model), out) == TrainExit.NO_DATA == 3
    good = _write(data_dir / "good.parquet", [_row()])
    assert train_command("prm", [good], str(tiny_model), out, ref_model=str(tiny_model)) == 2
    assert train_command("prm", [good], str(tiny_model), out, None, ["beta=0.1"]) == 2


# --------------------------------------------------------------------------- config


def test_config_fields_are_documented_and_beta_is_not_one():
    assert TRAINERS["prm"].config is PrmTrainingConfig
    for name, f in PrmTrainingConfig.model_fields.items():
        assert f.description and len(f.description) > 10, name
        assert not f.is_required(), name
    assert "beta" not in PrmTrainingConfig.model_fields
    with pytest.raises(ValueError, match="beta"):
        PrmTrainingConfig.model_validate({"beta": 0.1})
    with pytest.raises(ValueError, match=r"\[bad, good\]"):
        PrmTrainingConfig(class_weights=[1.0, 2.0, 3.0])
    assert PrmTrainingConfig(class_weights=[2.0, 1.0]).class_weights == [2.0, 1.0]


def test_training_arguments_carry_the_knobs(tmp_path: Path):
    args = PrmTrainingConfig(learning_rate=3e-4, per_device_train_batch_size=2,
                             extra_args={"weight_decay": 0.01}).trl_config(tmp_path, seed=7)
    assert type(args).__name__ == "TrainingArguments"
    assert args.learning_rate == 3e-4 and args.per_device_train_batch_size == 2 and args.seed == 7
    assert args.weight_decay == 0.01
    with pytest.raises(TrainingConfigError, match=r"transformers\.TrainingArguments"):
        PrmTrainingConfig(extra_args={"no_such_knob": 1}).trl_config(tmp_path)


def test_train_prm_help_lists_the_shared_options():
    from plumline.pipeline.cli import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["train", "prm", "--help"])
    text = " ".join(r.output.split())
    assert r.exit_code == 0
    for opt in ("--data", "--model", "--out", "--config", "--set", "--seed", "--overwrite"):
        assert opt in text
    assert "Exit codes: 0 trained" in text
    r = CliRunner().invoke(app, ["train", "rewards", "--help"])
    assert r.exit_code == 0 and "--prm" in r.output and "--samples" in r.output


# --------------------------------------------------------------------------- pure helpers


def test_aggregate_min_and_product():
    assert aggregate([0.9, 0.5, 0.8]) == 0.5
    assert aggregate([0.9, 0.5, 0.8], "product") == pytest.approx(0.36)
    assert aggregate([0.9, math.nan], "min") == 0.9  # a step past max_length is skipped
    assert aggregate([]) == 0.0 and aggregate([math.nan], "product") == 0.0  # nothing scored: lowest
    with pytest.raises(ValueError, match="mean"):
        aggregate([0.5], "mean")  # type: ignore[arg-type]


def test_dense_rewards_by_hand():
    # L = 4 lines: r_l = p_l / 4
    assert dense_rewards([1.0, 0.8, 0.4, 0.2]) == pytest.approx([0.25, 0.2, 0.1, 0.05])
    # baseline 0.5: r_l = (p_l - 0.5) / 2
    assert dense_rewards([0.9, 0.1], baseline=0.5) == pytest.approx([0.2, -0.2])
    assert dense_rewards([0.7]) == [0.7]
    assert dense_rewards([]) == []
    # The sum is the mean score: writing the same good line twice more earns nothing extra.
    assert sum(dense_rewards([0.9] * 3)) == pytest.approx(sum(dense_rewards([0.9])))
    nan = dense_rewards([0.5, math.nan])
    assert nan[0] == 0.25 and math.isnan(nan[1])


# --------------------------------------------------------------------------- a real run

GOOD_LINE, BAD_LINE = "total = total + 1", "raise SystemExit(None)"


def _toy_rows(n: int = 20) -> list[PrmRow]:
    """Separable: a step is bad exactly when it is BAD_LINE (bad lines come last, as in real labels)."""
    rows = []
    for i in range(n):
        good = i % 5
        rows.append(PrmRow(prompt=f"Count to four. (variant {i})\n",
                           completions=(GOOD_LINE,) * good + (BAD_LINE,) * (4 - good),
                           labels=(True,) * good + (False,) * (4 - good), problem_id=f"p{i}",
                           sample_id=f"s{i}", round=0, first_bad_step=good if good < 4 else None, k=4,
                           outcome="passed" if good == 4 else "failed"))
    return rows


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PrmRow]]:
    """One training run through ``train_command`` with a run config's ``prm.train`` section, on the
    Parquet file the prm stage writes (``PrmRow`` records)."""
    d = tmp_path_factory.mktemp("prm")
    rows = _toy_rows()
    data = d / "prm.parquet"
    pq.write_table(to_table(rows, PrmRow), data)
    cfg = d / "run.yaml"
    cfg.write_text("name: r\nprm:\n  train:\n    learning_rate: 0.002\n    eval_fraction: 0.25\n"
                   "    per_device_train_batch_size: 4\n    gradient_accumulation_steps: 1\n"
                   "    warmup_steps: 0\n    max_length: 256\n    bf16: false\n    class_weights: balanced\n")
    out = d / "model"
    assert train_command("prm", [data], str(tiny_model), out, cfg, ["max_steps=12"], seed=3) == TrainExit.OK
    return out, rows


@pytest.mark.slow
def test_training_saves_a_prm_that_scores_each_step(trained: tuple[Path, list[PrmRow]]):
    import torch
    from safetensors.torch import load_file

    out, rows = trained
    train_idx, held, _ = split_eval(len(rows), 0.25, 3, [r.problem_id for r in rows])
    report = TrainingReport.read(out)
    assert report.method == "prm" and report.steps == 12 and report.seed == 3
    assert report.config["learning_rate"] == 0.002 and "beta" not in report.config
    assert report.dataset_rows == 20 and report.train_rows == 15 and report.extra["eval_rows"] == 5
    train_gold = [lab for i in train_idx for lab in rows[i].labels]
    assert report.extra["train_steps_per_class"] == {"bad": train_gold.count(False), "good": sum(train_gold)}
    weights = report.extra["class_weights"]  # balanced: the rarer label weighs more
    assert len(weights) == 2 and (weights[0] > weights[1]) == (train_gold.count(False) < sum(train_gold))
    assert report.extra["rows_dropped_by_max_length"] == report.extra["steps_dropped_by_max_length"] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["prm_step_separator"] == "\n" and config["id2label"] == {"0": "bad", "1": "good"}
    assert config["architectures"] == ["LlamaForTokenClassification"]
    assert config["pad_token_id"] is not None
    assert all(torch.isfinite(v).all() for v in load_file(str(out / "model.safetensors")).values())

    # Held-out problems: scored after reloading, one probability per step.
    eval_rows = [rows[i] for i in held]
    scores = prm_step_scores(out, [r.prompt for r in eval_rows],
                             [join_steps(r.completions) for r in eval_rows], dtype="float32")
    assert [len(s) for s in scores] == [len(r.completions) for r in eval_rows]
    flat = [p for s in scores for p in s]
    assert all(0.0 <= p <= 1.0 for p in flat)
    gold = [lab for r in eval_rows for lab in r.labels]
    accuracy = sum((p > 0.5) == g for p, g in zip(flat, gold, strict=True)) / len(gold)
    chance = max(sum(gold), len(gold) - sum(gold)) / len(gold)  # always answering the majority label
    assert accuracy > chance and accuracy >= 0.9, (accuracy, chance, scores)
    ev = report.extra["eval"]  # the same held-out steps, scored by the trainer before saving
    assert ev["rows"] == 20 and ev["split"] == "group" and ev["accuracy"] == pytest.approx(accuracy)
    assert ev["rows_per_class"] == {"bad": len(gold) - sum(gold), "good": sum(gold)}
    # A list of steps scores the same as its program text; max_length leaves later steps unscored.
    again = prm_step_scores(out, [eval_rows[0].prompt], [eval_rows[0].completions], dtype="float32")
    assert again[0] == pytest.approx(scores[0], abs=1e-5)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    two = encode_steps(tok, rows[0].prompt, rows[0].completions).step_ends[1]
    cut = prm_step_scores(out, [rows[0].prompt], [rows[0].completions], dtype="float32",
                          max_length=two + 1)
    assert not any(math.isnan(p) for p in cut[0][:2]) and all(math.isnan(p) for p in cut[0][2:])


@pytest.mark.slow
def test_a_policy_folder_is_not_taken_for_a_prm(tiny_model: Path):
    with pytest.raises(ValueError, match="not a PRM"):
        prm_step_scores(tiny_model, ["p"], ["x = 1"])


def _sample(i: int, code: str | None) -> Sample:
    return Sample(sample_id=f"s{i}", problem_id=f"p{i % 2}", round=0, policy="tiny", policy_revision="r",
                  prompt="Count to four.\n", completion=code or "no code", code=code, finish_reason="stop",
                  prompt_tokens=3, completion_tokens=9, temperature=0.8, top_p=1.0, max_tokens=64, seed=i,
                  sample_index=i)


@pytest.mark.slow
def test_rewards_command_writes_per_line_rewards(trained: tuple[Path, list[PrmRow]], tmp_path: Path):
    out, _ = trained
    program = f"# count\n{GOOD_LINE}\n\n{GOOD_LINE}\n{BAD_LINE}\n"
    samples = [_sample(0, program), _sample(1, None), _sample(2, f"{GOOD_LINE}\n")]
    path = tmp_path / "samples.parquet"
    pq.write_table(to_table(samples, Sample), path)
    dest = tmp_path / "rewards" / "dense.parquet"
    assert rewards_command(str(out), path, dest, baseline=0.5, dtype="float32") == TrainExit.OK
    rows = {r.sample_id: r for r in from_table(pq.read_table(dest), DenseRewardRow)}
    assert set(rows) == {"s0", "s2"}  # s1 has no code
    r = rows["s0"]
    assert list(r.lines) == split_steps(program) and len(r.lines) == 3 and r.baseline == 0.5
    assert list(r.rewards) == pytest.approx([(p - 0.5) / 3 for p in r.scores])
    assert r.scores[0] > 0.5 > r.scores[2]  # the PRM learned the toy set
    assert r.prm_model == str(out.resolve()) and rows["s2"].problem_id == "p0"

    assert rewards_command(str(out), tmp_path / "missing.parquet", dest) == TrainExit.BAD_INPUT
    no_code = tmp_path / "no_code.parquet"
    pq.write_table(to_table([_sample(1, None)], Sample), no_code)
    assert rewards_command(str(out), no_code, dest) == TrainExit.NO_DATA
    assert rewards_command(str(tmp_path), path, dest) == TrainExit.BAD_INPUT  # not a model folder
