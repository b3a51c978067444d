"""Loading and checking the exported Parquet before TRL sees it (no training)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plumline.data_schemas.records import DpoChatRow, DpoRow, KtoChatRow, KtoRow
from plumline.trainers import (
    DpoTrainingConfig,
    KtoTrainingConfig,
    NoTrainingData,
    TrainingDataError,
    train_dpo,
    train_kto,
)
from plumline.trainers.data import check_rows, load_parquet
from plumline.trainers.dpo import DPO_COLUMNS
from plumline.trainers.kto import KTO_COLUMNS
from plumline.trainers.model import resolve_model
from plumline.trainers.output import NO_WEIGHTS_MARKER, holds_policy, mark_no_weights, staging_dir
from trainers_data import dpo_chat_rows, dpo_rows, kto_chat_rows, kto_rows, write_parquet


def _ds(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


def test_both_formats_are_recognised(data_dir: Path):
    ds, files = load_parquet([write_parquet(data_dir / "d.parquet", dpo_rows(3), DpoRow)])
    assert len(ds) == 3 and files == [str((data_dir / "d.parquet").resolve())]
    # Provenance columns come through unchanged: TRL drops them itself.
    assert {"problem_id", "chosen_sample_id", "margin", "round"} <= set(ds.column_names)
    assert check_rows(ds, DPO_COLUMNS, "d") == "standard"
    ds, _ = load_parquet(write_parquet(data_dir / "c.parquet", dpo_chat_rows(3), DpoChatRow))
    assert ds[0]["prompt"][0] == {"role": "user", "content": ds[0]["prompt"][0]["content"]}
    assert check_rows(ds, DPO_COLUMNS, "c") == "conversational"
    ds, _ = load_parquet(write_parquet(data_dir / "k.parquet", kto_rows(4), KtoRow))
    assert check_rows(ds, KTO_COLUMNS, "k") == "standard"
    ds, _ = load_parquet(write_parquet(data_dir / "kc.parquet", kto_chat_rows(4), KtoChatRow))
    assert check_rows(ds, KTO_COLUMNS, "kc") == "conversational"


def test_several_files_load_as_one_dataset(data_dir: Path):
    a = write_parquet(data_dir / "a.parquet", dpo_rows(3), DpoRow)
    b = write_parquet(data_dir / "b.parquet", dpo_rows(5), DpoRow)
    ds, files = load_parquet([a, b])
    assert len(ds) == 8 and len(files) == 2


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "p", "chosen": None, "rejected": "r"}, "row 1: column 'chosen' must be a string"),
    ({"prompt": "p", "chosen": "   ", "rejected": "r"}, "row 1: column 'chosen' is empty"),
    ({"prompt": "p", "chosen": "c", "rejected": ""}, "row 1: column 'rejected' is empty"),
])
def test_bad_rows_are_named(row: dict, needle: str):
    ds = _ds([{"prompt": "p", "chosen": "c", "rejected": "r"}, row])
    with pytest.raises(TrainingDataError, match=needle.replace("(", r"\(")):
        check_rows(ds, DPO_COLUMNS, "f.parquet")


def test_non_text_columns_are_named():
    ds = _ds([{"prompt": "p", "chosen": "c", "rejected": ["just", "strings"]}])
    with pytest.raises(TrainingDataError, match="row 0: column 'rejected'.*list of str"):
        check_rows(ds, DPO_COLUMNS, "f.parquet")
    ds = _ds([{"prompt": "p", "chosen": 3, "rejected": "r"}])
    with pytest.raises(TrainingDataError, match="row 0: column 'chosen'.*got int"):
        check_rows(ds, DPO_COLUMNS, "f.parquet")


def test_mixed_and_malformed_messages_are_rejected():
    msgs = [{"role": "user", "content": "hi"}]
    mixed = _ds([{"prompt": msgs, "completion": msgs, "label": True},
                 {"prompt": msgs, "completion": msgs, "label": False}])
    assert check_rows(mixed, KTO_COLUMNS, "x") == "conversational"
    # A conversational prompt with a string completion: one file, two formats.
    ds = _ds([{"prompt": "p", "completion": "c", "label": True}])
    ds2 = _ds([{"prompt": msgs, "completion": [], "label": True}])
    with pytest.raises(TrainingDataError, match="empty list"):
        check_rows(ds2, KTO_COLUMNS, "x")
    assert check_rows(ds, KTO_COLUMNS, "x") == "standard"
    bad_msgs = _ds([{"prompt": [{"role": "user"}], "completion": "c", "label": True}])
    with pytest.raises(TrainingDataError, match="row 0: column 'prompt'"):
        check_rows(bad_msgs, KTO_COLUMNS, "x")
    half = _ds([{"prompt": msgs, "chosen": "c", "rejected": "r"}])
    with pytest.raises(TrainingDataError, match="one format"):
        check_rows(half, DPO_COLUMNS, "x")


def test_kto_label_must_be_bool():
    ds = _ds([{"prompt": "p", "completion": "c", "label": 1}])
    with pytest.raises(TrainingDataError, match="row 0: column 'label' must be a bool"):
        check_rows(ds, KTO_COLUMNS, "x")


def test_wrong_export_is_named(data_dir: Path):
    ds, _ = load_parquet(write_parquet(data_dir / "k.parquet", kto_rows(2), KtoRow))
    with pytest.raises(TrainingDataError, match=r"missing column\(s\) \['chosen', 'rejected'\]"):
        check_rows(ds, DPO_COLUMNS, "k.parquet")


def test_empty_and_missing_inputs(data_dir: Path, tmp_path: Path):
    empty = write_parquet(data_dir / "empty.parquet", [], DpoRow)
    with pytest.raises(NoTrainingData, match="no rows"):
        load_parquet([empty])
    with pytest.raises(NoTrainingData):
        load_parquet([])
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_parquet([data_dir / "missing.parquet"])
    with pytest.raises(TrainingDataError, match="does not exist or is not a file"):
        load_parquet([data_dir])
    junk = data_dir / "junk.parquet"
    junk.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(TrainingDataError, match="not readable Parquet"):
        load_parquet([junk])
    # NoTrainingData is also a TrainingDataError, and it comes before any model is loaded.
    with pytest.raises(NoTrainingData):
        train_dpo([empty], tmp_path / "no-model", tmp_path / "out", DpoTrainingConfig())
    with pytest.raises(NoTrainingData):
        train_kto([write_parquet(data_dir / "ek.parquet", [], KtoRow)], tmp_path / "no-model",
                  tmp_path / "out", KtoTrainingConfig())
    assert not (tmp_path / "out").exists()


def test_files_with_different_schemas_do_not_crash(data_dir: Path):
    a = write_parquet(data_dir / "a.parquet", dpo_rows(2), DpoRow)
    b = data_dir / "b.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), b)
    with pytest.raises(TrainingDataError, match="cannot load"):
        load_parquet([a, b])


def test_resolve_model(tmp_path: Path, tiny_model: Path):
    assert resolve_model(tiny_model) == str(tiny_model.resolve())
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("./relative/nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(tmp_path / "empty")


def test_a_save_false_folder_cannot_pass_for_a_policy(tmp_path: Path, tiny_model: Path):
    """A dry run (save: false) leaves a report and a NO_WEIGHTS marker; even with a config.json
    beside them, neither the trainer nor ``holds_policy`` takes the folder for a model."""
    assert holds_policy(tiny_model) and not holds_policy(tmp_path)
    dry = tmp_path / "dry"
    shutil.copytree(tiny_model, dry)
    mark_no_weights(dry)
    assert (dry / NO_WEIGHTS_MARKER).is_file() and not holds_policy(dry)
    with pytest.raises(FileNotFoundError, match="save: false"):
        resolve_model(dry)


def test_conversational_data_needs_a_chat_template(data_dir: Path, tiny_model: Path, tmp_path: Path):
    import json

    plain = tmp_path / "no-template"
    shutil.copytree(tiny_model, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((plain / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tc))
    data = write_parquet(data_dir / "c.parquet", dpo_chat_rows(2), DpoChatRow)
    with pytest.raises(TrainingDataError, match="no chat template"):
        train_dpo([data], plain, tmp_path / "out", DpoTrainingConfig())
    assert not (tmp_path / "out").exists() and not staging_dir(tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(data_dir: Path, tiny_model: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous round")
    data = write_parquet(data_dir / "d.parquet", dpo_rows(2), DpoRow)
    with pytest.raises(FileExistsError, match="not empty"):
        train_dpo([data], tiny_model, out, DpoTrainingConfig())
    assert (out / "keep.txt").read_text() == "previous round"
