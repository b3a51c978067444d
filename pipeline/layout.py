"""The run directory (DESIGN.md, "Run directory") and stage bookkeeping.

    runs/<name>/config.yaml
    runs/<name>/round-000/{problems,tests,samples,executions,dpo,kto,critic}.parquet
    runs/<name>/round-000/errors.jsonl, manifest.json, model/
    runs/<name>/round-000/.stages/<stage>.done     one per finished stage (config hash + counts)

A round runs as a sequence of Beam pipelines, one per stage, each reading the previous stage's
Parquet and writing its own. A finished stage leaves a ``.done`` marker holding the hash of the
config sections it depends on: a rerun after a crash skips finished stages whose config did not
change and redoes the rest, so a crash loses at most the stage in flight.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each stage: the records it writes (file stems) and the config sections its output depends on.
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "read": (("problems",), ("sources",)),
    "tests": (("tests_candidates",), ("sources", "tests", "policy")),
    "sample": (("samples",), ("sources", "policy", "sampling", "seed")),
    "execute": (("tests", "executions"), ("sources", "policy", "sampling", "seed", "tests",
                                          "validation", "sandbox")),
    "export": (("dpo", "kto", "critic"), ("sources", "policy", "sampling", "seed", "tests",
                                          "validation", "sandbox", "pairing", "export")),
}


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

    def parquet(self, stem: str) -> Path:
        return self.dir / f"{stem}.parquet"

    def jsonl(self, stem: str) -> Path:
        return self.dir / f"{stem}.jsonl"

    def stage_errors(self, stage: str) -> Path:
        return self.stages_dir / f"{stage}.errors.jsonl"

    @property
    def errors(self) -> Path:
        return self.dir / "errors.jsonl"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    def marker(self, stage: str) -> Path:
        return self.stages_dir / f"{stage}.done"

    def stage_done(self, stage: str, config_hash: str) -> bool:
        m = self.marker(stage)
        if not m.is_file():
            return False
        try:
            info = json.loads(m.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        outputs_present = all(self.parquet(stem).is_file() for stem in STAGES[stage][0])
        return info.get("config_hash") == config_hash and outputs_present

    def mark_done(self, stage: str, config_hash: str, info: dict[str, Any]) -> None:
        self.stages_dir.mkdir(parents=True, exist_ok=True)
        payload = {"stage": stage, "config_hash": config_hash, "finished_at": time.time(), **info}
        atomic_write_text(self.marker(stage), json.dumps(payload, indent=2))

    def invalidate_from(self, stage: str) -> None:
        """A stage that reruns makes every later stage stale."""
        names = list(STAGES)
        for later in names[names.index(stage):]:
            self.marker(later).unlink(missing_ok=True)
        (self.stages_dir / "train.done").unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
