"""A training run's output folder and its report.

The folder is written atomically: everything goes into a staging folder beside it, which is
renamed into place only when training finished, so a crashed run never leaves a half-written
folder that the next round would load as its policy. A ``save: false`` run writes the report and
a ``NO_WEIGHTS`` marker instead of a model, so the folder cannot pass for a policy
(``holds_policy`` says which).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

REPORT_NAME = "training_report.json"
NO_WEIGHTS_MARKER = "NO_WEIGHTS"


@dataclasses.dataclass
class TrainingReport:
    """What a training run did; written to ``<output_dir>/training_report.json``."""

    method: str
    model: str
    output_dir: str
    data_files: list[str]
    data_format: str  # "standard" | "conversational"
    dataset_rows: int  # rows in the Parquet files
    train_rows: int  # rows TRL trained on (after dropping over-long prompts)
    steps: int  # optimizer steps taken
    epochs: float
    runtime_s: float
    train_loss: float | None  # TRL's average loss over the run
    loss_curve: list[dict[str, float]]  # [{"step", "loss"}] one per log
    log_history: list[dict[str, Any]]  # every metric TRL logged (rewards, margins, ...)
    saved: bool  # the folder holds the trained model (False: config save was false)
    seed: int
    device: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        """The one-line JSON the train command prints on stdout (with a classifier's held-out
        ``extra["eval"]`` metrics, lists such as a confusion matrix left to the report file)."""
        out = {"output_dir": self.output_dir, "saved": self.saved, "steps": self.steps,
               "train_loss": self.train_loss, "runtime_s": self.runtime_s, "train_rows": self.train_rows}
        if isinstance(self.extra.get("eval"), dict):
            out["eval"] = {k: v for k, v in self.extra["eval"].items() if not isinstance(v, list)}
        return out

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str, allow_nan=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, folder: Path) -> TrainingReport:
        data = json.loads((Path(folder) / REPORT_NAME).read_text())
        return cls(**data)


def holds_policy(folder: str | Path) -> bool:
    """True when ``folder`` holds a loadable model: a ``config.json`` and no ``NO_WEIGHTS`` marker."""
    p = Path(folder)
    return (p / "config.json").is_file() and not (p / NO_WEIGHTS_MARKER).exists()


def mark_no_weights(stage: Path) -> None:
    """Mark a ``save: false`` run's folder so that no loader takes it for a policy."""
    (stage / NO_WEIGHTS_MARKER).write_text(
        f"Trained with save: false: this folder holds only {REPORT_NAME}, not a model.\n")


def versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers
    import trl

    out = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
           "datasets": datasets.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [{"step": int(e["step"]), "loss": float(e["loss"])}
            for e in log_history if "loss" in e and "step" in e]


def clean_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL's log history with numpy/torch scalars turned into plain numbers (JSON-ready)."""
    out = []
    for e in log_history:
        row: dict[str, Any] = {}
        for k, v in e.items():
            if k == "step":
                row[k] = int(v)
            elif hasattr(v, "item"):  # numpy / torch scalars
                row[k] = v.item()
            else:
                row[k] = v
        out.append(row)
    return out


def staging_dir(output_dir: Path) -> Path:
    """Where a run writes before the final rename."""
    return output_dir.with_name(f".{output_dir.name}.partial")


def prepare_output(output_dir: Path, overwrite: bool) -> Path:
    """A fresh staging folder for ``output_dir``; a non-empty ``output_dir`` needs ``overwrite``."""
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"output dir {output_dir} exists and is not empty (pass overwrite=True)")
    stage = staging_dir(output_dir)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def clear_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (what TRL wrote: checkpoints, logs)."""
    for leftover in folder.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


def finish_output(stage: Path, output_dir: Path) -> None:
    """Swap the finished staging folder into place (rename is atomic on one file system)."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    stage.rename(output_dir)
