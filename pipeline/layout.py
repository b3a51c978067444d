"""The run directory (DESIGN.md, "Run directory") and the stage markers.

    runs/<name>/config.yaml
    runs/<name>/round-000/<artifact>.parquet, model/          (pipeline/stages.py ARTIFACTS)
    runs/<name>/round-000/errors.jsonl, manifest.json
    runs/<name>/round-000/.stages/<stage>.done               one per finished stage
    runs/<name>/round-000/.stages/<stage>.errors.jsonl       that stage's error lines
    runs/<name>/round-000/.stages/<internal artifact>.parquet bookkeeping (per-problem stats...)

A finished stage leaves a ``.done`` marker with its key (``stages.stage_key``: its config sections
and its inputs' run tokens), a fresh run token, and the artifacts it wrote. A rerun skips a stage
whose key matches and whose artifacts are all there; any stage that runs again gets a new token,
which changes the key of every stage reading its output.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from plumline.data_schemas import Stage
from plumline.pipeline.artifacts import artifact_path


@dataclass(frozen=True)
class StageMarker:
    """The content of ``<stage>.done``."""

    stage: str
    key: str
    token: str  # new each time the stage runs: the key of every reader of its output includes it
    outputs: tuple[str, ...]  # artifacts written (training may write no model: no usable rows)
    seconds: float
    rows: dict[str, int]
    info: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, "key": self.key, "token": self.token,
                           "outputs": list(self.outputs), "seconds": self.seconds, "rows": self.rows,
                           "info": self.info, "finished_at": time.time()}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> StageMarker | None:
        try:
            d = json.loads(text)
            return cls(stage=str(d["stage"]), key=str(d["key"]), token=str(d["token"]),
                       outputs=tuple(d["outputs"]), seconds=float(d["seconds"]),
                       rows={str(k): int(v) for k, v in dict(d["rows"]).items()}, info=dict(d["info"]))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable marker means "not done"


@dataclass(frozen=True)
class RoundLayout:
    run_dir: Path
    round: int

    @property
    def dir(self) -> Path:
        return self.run_dir / f"round-{self.round:03d}"

    @property
    def stages_dir(self) -> Path:
        return self.dir / ".stages"

    def artifact_path(self, name: str) -> Path:
        return artifact_path(self.dir, name)

    def stage_errors(self, stage: Stage) -> Path:
        return self.stages_dir / f"{Stage(stage).value}.errors.jsonl"

    @property
    def errors(self) -> Path:
        return self.dir / "errors.jsonl"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def model_dir(self) -> Path:
        return self.artifact_path("model")

    def progress_dir(self, stage: Stage) -> Path:
        """The stage's live progress channel (``plumline.llm.progress``), read by the console."""
        return self.dir / ".progress" / Stage(stage).value

    def checkpoint_dir(self, stage: Stage, key: str) -> Path:
        return self.stages_dir / f"{Stage(stage).value}.{key}.parts"

    def drop_checkpoints(self, stage: Stage, keep_key: str | None = None) -> None:
        """Remove a stage's element checkpoints (all of them, or all but the current key's)."""
        for folder in self.stages_dir.glob(f"{Stage(stage).value}.*.parts"):
            if keep_key is None or folder != self.checkpoint_dir(stage, keep_key):
                shutil.rmtree(folder, ignore_errors=True)

    def remove_partial_writes(self) -> None:
        """Beam's temporary write folders and our ``.*.tmp-*`` files left by a killed run: never
        read as data (no marker names them), removed before a stage writes again."""
        for folder in (self.dir, self.stages_dir):
            for leftover in [*folder.glob("beam-temp-*"), *folder.glob(".*.tmp-*")]:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def marker(self, stage: Stage) -> Path:
        return self.stages_dir / f"{Stage(stage).value}.done"

    def read_marker(self, stage: Stage) -> StageMarker | None:
        path = self.marker(stage)
        try:
            return StageMarker.from_json(path.read_text(encoding="utf-8"))
        except OSError:
            return None

    def finished(self, stage: Stage, key: str) -> StageMarker | None:
        """The marker when the stage finished with this key and its artifacts are all present."""
        marker = self.read_marker(stage)
        if marker is None or marker.key != key:
            return None
        if not all(self.artifact_path(name).exists() for name in marker.outputs):
            return None
        return marker

    def mark_done(self, stage: Stage, key: str, outputs: tuple[str, ...], seconds: float,
                  rows: dict[str, int], info: dict[str, Any] | None = None) -> StageMarker:
        marker = StageMarker(stage=Stage(stage).value, key=key, token=uuid.uuid4().hex, outputs=outputs,
                             seconds=round(seconds, 2), rows=rows, info=info or {})
        atomic_write_text(self.marker(stage), marker.to_json())
        return marker

    def adopt(self, marker: StageMarker, seconds: float, info: dict[str, Any]) -> StageMarker:
        """Mark a stage done with files taken from an earlier round: that round's key and token (its
        readers' keys stay the same), this adoption's seconds, ``info`` added to the marker's."""
        adopted = StageMarker(stage=marker.stage, key=marker.key, token=marker.token, outputs=marker.outputs,
                              seconds=round(seconds, 2), rows=marker.rows, info={**marker.info, **info})
        atomic_write_text(self.marker(Stage(marker.stage)), adopted.to_json())
        return adopted

    def forget(self, stage: Stage) -> None:
        """Drop a stage's marker before it runs, so a crash mid-stage never looks finished."""
        self.marker(stage).unlink(missing_ok=True)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` with ``src``'s content: a hard link (no bytes copied; run files are only ever replaced
    whole, never edited in place, so sharing them is safe), or a copy where links cannot be made."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_or_copy_file)
    else:
        _link_or_copy_file(src, dst)


def _link_or_copy_file(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """Write a Parquet file via a temporary name and rename, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
