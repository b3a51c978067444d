"""The artifacts a round writes: name, record type, where it lives (``pipeline/stages.py`` says which
stage writes and reads each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plumline.data_schemas import (
    CriticRow,
    DpoChatRow,
    DpoRow,
    EvalSample,
    Execution,
    KtoChatRow,
    KtoRow,
    PairingStats,
    Problem,
    Record,
    ReferenceVerdict,
    Sample,
    TestCase,
    TestSynthesisStats,
)
from plumline.data_schemas.records import PrmRow, PrmStats

if TYPE_CHECKING:
    from plumline.pipeline.config import RunConfig


RecordTypeOf = Callable[["RunConfig"], type[Record]]


@dataclass(frozen=True)
class Artifact:
    """One thing a stage writes into the round folder.

    ``record``: the record type of a Parquet artifact (a function of the config where the export
    format decides it); ``None`` for a folder (the trained model). ``internal`` artifacts live in
    the round's ``.stages/`` folder: bookkeeping, not part of the dataset."""

    name: str
    record: type[Record] | RecordTypeOf | None
    internal: bool = False
    description: str = ""

    @property
    def is_folder(self) -> bool:
        return self.record is None

    def record_type(self, cfg: RunConfig) -> type[Record]:
        if self.record is None:
            raise TypeError(f"artifact {self.name} is a folder, not records")
        if isinstance(self.record, type):
            return self.record
        return self.record(cfg)


def _conversational(cfg: RunConfig) -> bool:
    return cfg.export.format == "conversational"


ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("problems", Problem, description="every problem read"),
    Artifact("tests_candidates", TestCase, internal=True,
             description="tests before validation (synthesized, example, given)"),
    Artifact("tests_stats", TestSynthesisStats, internal=True, description="per-problem test counts"),
    Artifact("samples", Sample, description="every completion sampled from the policy"),
    Artifact("tests", TestCase, description="every test with kept/drop_reason after validation"),
    Artifact("executions", Execution, description="one row per executed sample"),
    Artifact("reference_verdicts", ReferenceVerdict, internal=True,
             description="per problem: whether its reference solution passed every kept test"),
    Artifact("dpo", lambda cfg: DpoChatRow if _conversational(cfg) else DpoRow,
             description="chosen/rejected pairs for trl.DPOTrainer"),
    Artifact("kto", lambda cfg: KtoChatRow if _conversational(cfg) else KtoRow,
             description="unpaired rows for trl.KTOTrainer"),
    Artifact("critic", CriticRow, description="CodeRL critic rows"),
    Artifact("pair_stats", PairingStats, internal=True, description="per-problem pairing counts"),
    Artifact("model", None, description="the policy trained on this round's data"),
    Artifact("eval_problems", Problem, internal=True, description="the held-out problems evaluated"),
    Artifact("eval_samples", EvalSample,
             description="held-out evaluation: one row per completion, run on the problem's own tests"),
    Artifact("prm", PrmRow, description="step labels of programs (prompt, completions, labels) for a PRM"),
    Artifact("prm_stats", PrmStats, internal=True, description="prm selection and labelling counts"),
)}


def artifact_path(round_dir: Path, name: str) -> Path:
    art = ARTIFACTS[name]
    folder = round_dir / ".stages" if art.internal else round_dir
    return folder / name if art.is_folder else folder / f"{name}.parquet"
