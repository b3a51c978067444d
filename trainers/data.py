"""Loading plumline's exported Parquet files for training and checking every row before TRL sees it.

Why check here: TRL fails on a null or mixed-format row deep in a ``map`` with a message that names
neither the row nor the file; here the message names the file, the row index and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TrainingDataError(ValueError):
    """The training data cannot be used (missing file, wrong columns, a malformed row).
    The message names the file and, for a bad row, its index and the reason."""


class NoTrainingData(TrainingDataError):
    """Nothing to train on: no rows in the given files (or none left after TRL drops rows whose
    prompt fills ``max_length``). The online loop catches this and skips training for the round."""


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str) for m in value))


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return "an empty list" if not v else f"a list of {type(v[0]).__name__} (not role/content messages)"
    return type(v).__name__


def check_rows(dataset: Any, columns: dict[str, str], label: str) -> str:
    """Check every row's training columns; returns ``"standard"`` or ``"conversational"``.

    ``columns`` maps a column name to its kind: ``"text"`` (a string, or a non-empty list of
    role/content messages) or ``"bool"``. One file must use one format.
    """
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise TrainingDataError(f"{label}: missing column(s) {missing}; found {dataset.column_names}")
    fmt: str | None = None
    for name, kind in columns.items():
        values = dataset[name]
        for i, v in enumerate(values):
            if kind == "bool":
                if not isinstance(v, bool):
                    raise TrainingDataError(f"{label}: row {i}: column {name!r} must be a bool, "
                                            f"got {type(v).__name__}")
                continue
            if isinstance(v, str):
                row_fmt = "standard"
                if name != "prompt" and not v.strip():
                    raise TrainingDataError(f"{label}: row {i}: column {name!r} is empty")
            elif _is_messages(v):
                row_fmt = "conversational"
            else:
                raise TrainingDataError(
                    f"{label}: row {i}: column {name!r} must be a string or a list of role/content "
                    f"messages, got {_describe(v)}")
            if fmt is None:
                fmt = row_fmt
            elif fmt != row_fmt:
                raise TrainingDataError(f"{label}: row {i}: column {name!r} is {row_fmt} but earlier "
                                        f"values are {fmt}; one file must use one format")
    return fmt or "standard"


def load_parquet(data_files: list[str | Path] | tuple[str | Path, ...] | str | Path) -> tuple[Any, list[str]]:
    """Load exported Parquet files unchanged with ``datasets``; returns (dataset, file list).

    Raises ``TrainingDataError`` for a missing or unreadable file and ``NoTrainingData`` when the
    files hold no rows.
    """
    import datasets
    import pyarrow.parquet as pq

    if isinstance(data_files, (str, Path)):
        data_files = [data_files]
    files = [str(Path(f).expanduser().resolve()) for f in data_files]
    if not files:
        raise NoTrainingData("no data files given")
    for f in files:
        if not Path(f).is_file():
            raise TrainingDataError(f"data file {f} does not exist or is not a file")
    # An empty Parquet file has a schema but no rows; datasets fails on it with an unhelpful
    # error in some versions, so count rows from the footer first.
    rows = 0
    for f in files:
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except Exception as e:  # noqa: BLE001 - any read failure is a bad input file
            raise TrainingDataError(f"data file {f} is not readable Parquet: {e}") from None
    if rows == 0:
        raise NoTrainingData(f"no rows in {', '.join(files)}")
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except Exception as e:  # noqa: BLE001 - e.g. files with different schemas
        raise TrainingDataError(f"cannot load {', '.join(files)} as one dataset: {e}") from None
    return ds, files
