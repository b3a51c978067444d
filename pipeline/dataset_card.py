"""``plumline export RUN_DIR --to DIR``: a folder that ``datasets.load_dataset(DIR, "dpo")`` reads and
``push_to_hub`` publishes as it is, with a dataset card (``README.md``, Hugging Face style).

The folder holds one sub-folder per export (the training exports of the stage table: dpo, kto,
critic), one Parquet file per round in it, and the card: a YAML header with one ``configs`` entry per
export (its ``data_files``), then what was generated, by which models, the config hash and package
versions, counts, the sources and their licences, decontamination against the eval sets, and how to
load and train on each file. ``plumline/`` keeps the run's config and manifests for provenance.
Nothing is uploaded.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from plumline.data_schemas import Stage
from plumline.pipeline.artifacts import ARTIFACTS, artifact_path
from plumline.pipeline.config import RunConfig, load_config

# Licences of the bundled problem sets (a source config may also carry its own ``license`` field).
BUNDLED_LICENCES = {
    "bundled:humaneval": "mit",  # openai/human-eval, MIT licence
    "bundled:easy": "apache-2.0",  # written for plumline, shipped under the package's licence
    "bundled:easy-train": "apache-2.0",
    "bundled:easy-eval": "apache-2.0",
}
UNKNOWN = "unknown"

# How each export trains, for the card.
_USAGE = {
    "dpo": ("trl.DPOTrainer", "DPOConfig", "DPOTrainer",
            "preference pairs: `prompt`, `chosen` (passes every kept test), `rejected` (fails at least one)"),
    "kto": ("trl.KTOTrainer", "KTOConfig", "KTOTrainer",
            "unpaired rows: `prompt`, `completion`, `label` (true: passes every kept test)"),
    "critic": (None, None, None,
               ("CodeRL critic rows, one per executed program (per distinct program with dedupe): `prompt`, "
                "`code`, `outcome`, `coderl_class` (0 compile error, 1 runtime error, 2 failed tests, 3 "
                "passed), `coderl_return` (-1, -0.6, -0.3, +1), `error_type`, `error_line`, `pass_ratio`; "
                "the greedy baseline of the same "
                "problem: `greedy_class`, `greedy_sample_id` and `relative_return` (`coderl_return` minus "
                "the greedy sample's; null when the problem has no greedy sample); `source` (`sample`, or "
                "`reference` for a reference solution known to pass). For a sequence classifier: "
                "`plumline train critic`")),
    "prm": (None, None, None,
            ("process-supervision rows in TRL's stepwise format: `prompt`, `completions` (the program's "
             "lines, blank and comment lines joined to the next), `labels` (true while a passing program can "
             "still be completed from the prefix ending with that line), `first_bad_step`, `k`, `probed`; "
             "for a process reward model: `plumline train prm`")),
}


def export_names() -> tuple[str, ...]:
    """The training exports: what the export and prm stages write that is part of the dataset."""
    from plumline.pipeline.stages import stage_spec

    return tuple(n for stage in (Stage.EXPORT, Stage.PRM) for n in stage_spec(stage).outputs
                 if not ARTIFACTS[n].internal and not ARTIFACTS[n].is_folder)


def source_licence(source: Any) -> str:
    """A source's licence: its config's ``license`` (or ``licence``) field when it has one, the known
    licence of a bundled set, else ``unknown``."""
    for attr in ("license", "licence"):
        value = getattr(source, attr, None)
        if value:
            return str(value)
    return BUNDLED_LICENCES.get(str(getattr(source, "path", "")), UNKNOWN)


@dataclass
class ExportSummary:
    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)  # export -> rows over the exported rounds
    files: dict[str, list[str]] = field(default_factory=dict)  # export -> files (relative to out_dir)
    rounds: list[int] = field(default_factory=list)


def _manifests(run_dir: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for folder in sorted(run_dir.glob("round-[0-9][0-9][0-9]")):
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not m.get("eval_only"):
            out[int(m.get("round", folder.name.split("-")[-1]))] = m
    return out


def export_dataset(run_dir: Path, to: Path, rounds: list[int] | None = None) -> ExportSummary:
    """Copy the exports of ``rounds`` (default: every finished round) into ``to`` and write the card.
    Raises ValueError when the folder is not a run, or a round asked for is not finished."""
    run_dir, to = Path(run_dir), Path(to)
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    manifests = _manifests(run_dir)
    chosen = sorted(manifests) if rounds is None else sorted(rounds)
    missing = [r for r in chosen if r not in manifests]
    if missing:
        raise ValueError(f"round(s) {missing} of {run_dir} are not finished (no manifest.json)")
    if not chosen:
        raise ValueError(f"{run_dir} has no finished round")
    summary = ExportSummary(out_dir=to, rounds=chosen)
    for name in export_names():
        shutil.rmtree(to / name, ignore_errors=True)
        for r in chosen:
            src = artifact_path(run_dir / f"round-{r:03d}", name)
            n = pq.ParquetFile(src).metadata.num_rows if src.exists() else 0
            if n == 0:
                continue  # an empty file adds nothing (and an all-empty export gets no config)
            dest = to / name / f"round-{r:03d}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            summary.rows[name] = summary.rows.get(name, 0) + n
            summary.files.setdefault(name, []).append(dest.relative_to(to).as_posix())
    prov = to / "plumline"
    shutil.rmtree(prov, ignore_errors=True)
    prov.mkdir(parents=True)
    shutil.copyfile(run_dir / "config.yaml", prov / "config.yaml")
    for r in chosen:
        text = json.dumps(manifests[r], indent=2)
        (prov / f"round-{r:03d}.manifest.json").write_text(text, encoding="utf-8")
    (to / "README.md").write_text(dataset_card(cfg, summary, manifests), encoding="utf-8")
    return summary


def _header(cfg: RunConfig, summary: ExportSummary) -> dict[str, Any]:
    licences = sorted({source_licence(s) for s in cfg.sources})
    names = [n for n in export_names() if n in summary.files]
    configs = [{"config_name": n, "data_files": [{"split": "train", "path": f"{n}/*.parquet"}],
                **({"default": True} if i == 0 else {})} for i, n in enumerate(names)]
    return {
        "license": licences[0] if len(licences) == 1 and licences[0] != UNKNOWN else "other",
        "pretty_name": f"plumline {cfg.name}",
        "language": ["en", "code"],
        "task_categories": ["text-generation"],
        "tags": ["code", "plumline", "execution-verified", "preference", *names],
        "configs": configs,
    }


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(cfg: RunConfig, summary: ExportSummary, manifests: dict[int, dict[str, Any]]) -> str:
    """The README.md of an exported folder."""
    ms = [manifests[r] for r in summary.rounds]
    names = [n for n in export_names() if n in summary.files]
    writer = cfg.tests.writer.model if cfg.tests.writer is not None else None
    last = ms[-1]
    out = ["---", yaml.safe_dump(_header(cfg, summary), sort_keys=False).rstrip(), "---", "",
           f"# plumline {cfg.name}", "",
           ("Execution-verified, on-policy training data for code language models, generated by "
            "plumline with the PLUM recipe: tests synthesized for each problem, "
            "solutions sampled from the policy being trained, every solution run in a sandbox against "
            "the kept tests; a solution passing all of them is *chosen*, one failing any is *rejected*."), ""]

    out += ["## What is here", "", _md_table(
        ["config", "rows", "files", "what"],
        [[n, summary.rows[n], ", ".join(summary.files[n]), _USAGE.get(n, (None,) * 4)[3]] for n in names]),
        "", "Exports without rows are left out" + (
            f" ({', '.join(sorted(set(export_names()) - set(names)))})." if set(export_names()) - set(names)
            else "."),
        "Rows of every round are in one `train` split; the `round` column tells them apart.", ""]

    out += ["## How it was generated", "", _md_table(
        ["round", "policy (model)", "revision", "backend", "problems", "samples", "pass rate", "tests kept",
         "dpo", "kto", "critic", "config hash"],
        [[m["round"], (m.get("policy") or {}).get("model"), (m.get("policy") or {}).get("revision"),
          (m.get("policy") or {}).get("backend"), (m.get("counts") or {}).get("problems"),
          (m.get("samples") or {}).get("total"), _pct((m.get("executions") or {}).get("pass_rate")),
          f"{(m.get('tests') or {}).get('kept')}/{(m.get('tests') or {}).get('total')}",
          (m.get("counts") or {}).get("dpo"), (m.get("kto") or {}).get("rows"),
          (m.get("critic") or {}).get("rows"), m.get("config_hash")] for m in ms]), "",
        f"- Test writer: `{writer}`." if writer else "- Test writer: the policy itself (no `tests.writer`).",
        (f"- Sampling: n={cfg.sampling.n} per problem, temperature {cfg.sampling.temperature}, "
         f"top_p {cfg.sampling.top_p}, max_tokens {cfg.sampling.max_tokens}; seed {cfg.seed}."),
        f"- Export format: {cfg.export.format}. Training between rounds: {cfg.training.method}.",
        "- The resolved config and each round's manifest are in `plumline/`.", "",
        "Package versions (last round):", "",
        _md_table(["package", "version"], sorted((last.get("versions") or {}).items())), ""]

    out += ["## Sources and licences", "", _md_table(
        ["source", "format", "limit", "licence"],
        [[f"`{s.path}`", s.format, s.limit, source_licence(s)] for s in cfg.sources]), ""]
    if any(source_licence(s) == UNKNOWN for s in cfg.sources):
        out += [("The licence of a source marked `unknown` was not recorded in the run config: check it "
                 "before publishing this dataset; the prompts come from that source."), ""]
    out += ["Completions were generated by the models named above; their licences apply too.", ""]

    out += ["## Decontamination", ""]
    if cfg.eval.enabled:
        removed = sum((m.get("problems") or {}).get("contaminated", 0) or 0 for m in ms)
        out += [(f"Training problems were checked against the eval sources "
                 f"({', '.join(f'`{s.path}`' for s in cfg.eval.sources)}) by problem id and prompt text; "
                 f"{removed} problem(s) overlapping them were removed before any sampling (kind "
                 "`contaminated` in the run's errors.jsonl)."), ""]
    else:
        out += [("**None.** The run had no eval sources, so no training problem was checked for overlap "
                 "with any benchmark. Check overlap with the benchmarks you report on before training."), ""]

    out += ["## Load", "", "```python", "from datasets import load_dataset", ""]
    out += [f'{n} = load_dataset("path/to/this/folder", "{n}", split="train")' for n in names]
    out += ["```", "", "## Train with TRL", ""]
    for n in names:
        trainer, config_cls, trainer_cls, _ = _USAGE.get(n, (None,) * 4)
        if trainer is None:
            continue
        out += [f"`{n}` trains with `{trainer}` unchanged:", "", "```python",
                f"from trl import {config_cls}, {trainer_cls}",
                "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                'model = AutoModelForCausalLM.from_pretrained("your/policy")',
                'tokenizer = AutoTokenizer.from_pretrained("your/policy")',
                f'args = {config_cls}(output_dir="{n}-model")',
                f"trainer = {trainer_cls}(model=model, args=args, train_dataset={n},",
                "                  processing_class=tokenizer)",
                "trainer.train()", "```", ""]
    out += ["Or with plumline: `plumline train dpo|kto` on the Parquet files.", ""]
    if "critic" in names:
        out += [("`critic` trains CodeRL's critic, a sequence classifier over the four outcome classes on "
                 "the policy's backbone (input: `prompt` then `code`; label: `coderl_class`): "
                 "`plumline train critic --data critic/round-000.parquet --model POLICY --out critic`."), ""]
    return "\n".join(out)
