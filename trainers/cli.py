"""``plumline train dpo|kto|prm|critic`` (and ``plumline train rewards``): one typer sub-app, mounted on
``plumline`` and run on its own by ``python -m plumline.trainers`` (the online loop trains in a separate
process to free the GPU).

``train_command`` is the plain function behind the train commands, ``rewards_command`` the one behind
``rewards``; both return a ``TrainExit``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from .config import BaseTrainingConfig, TrainingConfigError, load_config
from .critic import CriticTrainingConfig, train_critic
from .data import NoTrainingData, TrainingDataError
from .dpo import DpoTrainingConfig, train_dpo
from .exit_codes import TrainExit, epilog
from .kto import KtoTrainingConfig, train_kto
from .output import TrainingReport
from .prm import PrmTrainingConfig, train_prm
from .rewards import write_dense_rewards

logger = logging.getLogger(__name__)


class Method(NamedTuple):
    """One training method: its config class, its train function, its one-line help."""

    config: type[BaseTrainingConfig]
    train: Callable[..., TrainingReport]  # train_dpo / train_kto
    help: str


TRAINERS: dict[str, Method] = {
    "dpo": Method(DpoTrainingConfig, train_dpo, help=(
        "DPO (trl.DPOTrainer) on a round's dpo.parquet: prompt, chosen (passes every test), "
        "rejected (fails one).")),
    "kto": Method(KtoTrainingConfig, train_kto, help=(
        "KTO (trl.KTOTrainer) on a round's kto.parquet: prompt, completion, label (True: passes "
        "every test).")),
    "critic": Method(CriticTrainingConfig, train_critic, help=(
        "CodeRL critic (a sequence classifier on the policy's backbone, transformers' Trainer) on a "
        "round's critic.parquet: prompt + code -> outcome class (0 compile error, 1 runtime error, 2 failed "
        "tests, 3 passed). The output folder is a critic for reranking, not a policy; no --ref-model.")),
    "prm": Method(PrmTrainingConfig, train_prm, help=(
        "Process reward model (token classification, transformers' Trainer) on a round's prm.parquet: "
        "prompt, completions (the program's lines), labels (True while a passing program can still "
        "be completed). The output folder is a PRM for `plumline train rewards` and reranking, not a "
        "policy.")),
}
METHODS = tuple(TRAINERS)


def train_command(method: str, data: list[Path], model: str, out: Path, config: Path | None = None,
                  overrides: list[str] | None = None, overwrite: bool = False, seed: int = 0,
                  ref_model: str | None = None) -> TrainExit:
    """Train ``model`` on ``data`` (Parquet exports) with ``method``; save to ``out``.

    ``config`` is a YAML (or JSON) file: the method's section itself, or a run config holding it
    (``<method>.train``). ``overrides`` are ``dotted.key=value`` strings (``beta=0.2``, ``lora.r=8``,
    ``extra_args.weight_decay=0.01``). Prints the report's summary as one JSON line on stdout.
    """
    if method not in TRAINERS:
        logger.error("unknown method %r; choose from %s", method, list(METHODS))
        return TrainExit.BAD_INPUT
    cfg_cls, train, _ = TRAINERS[method]
    try:
        cfg = load_config(cfg_cls, method, config, overrides or [])
        report = train(list(data), model, Path(out), cfg, seed=seed, overwrite=overwrite, ref_model=ref_model)
    except NoTrainingData as e:
        logger.warning("no training data: %s", e)
        return TrainExit.NO_DATA
    except (TrainingConfigError, TrainingDataError, FileNotFoundError, FileExistsError) as e:
        logger.error("%s", e)
        return TrainExit.BAD_INPUT
    except Exception:
        logger.exception("%s training failed", method)
        return TrainExit.FAILED
    print(json.dumps(report.summary()))
    return TrainExit.OK


app = typer.Typer(name="train", no_args_is_help=True, add_completion=False, epilog=epilog(),
                  help="Train the policy with TRL on a round's Parquet export (DPO or KTO), train a process "
                  "reward model (PRM) or CodeRL's critic, or score samples with a PRM (rewards).")

# Each option is declared once here and shared by every method's command.
DataOpt = Annotated[list[Path], typer.Option(
    "--data", help="Parquet file exported by a round (repeat --data for several files).")]
ModelOpt = Annotated[str, typer.Option(
    "--model", help="Policy to train: a model folder (config.json + weights) or a hub id.")]
OutOpt = Annotated[Path, typer.Option(
    "--out", help="Folder for the trained model, tokenizer and training_report.json (written atomically).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML/JSON training config: the method's section, or a run config holding it "
    "under <method>.train. Omitted: defaults.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override a training field, e.g. --set beta=0.2 --set lora.r=8 "
    "(repeatable; value read as YAML). `plumline config fields dpo.train` lists the fields.")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", help="Seed for adapter init, data order and dropout (the online loop passes one derived "
    "from the run seed).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
RefModelOpt = Annotated[str | None, typer.Option(
    "--ref-model", help="Reference model (a model folder or hub id); omitted: the policy's starting "
    "weights (the online loop passes the run's initial policy from round 1 on).")]


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevelOpt = Annotated[LogLevel, typer.Option("--log-level", case_sensitive=False,
                                               help="Logging level of the log on stderr.")]


def _method_command(method: str) -> Any:
    def command(data: DataOpt, model: ModelOpt, out: OutOpt, config: ConfigOpt = None,
                set_: SetOpt = None, seed: SeedOpt = 0, overwrite: OverwriteOpt = False,
                ref_model: RefModelOpt = None, log_level: LogLevelOpt = LogLevel.INFO) -> None:
        logging.basicConfig(level=log_level.value, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        raise typer.Exit(int(train_command(method, data, model, out, config, set_ or [], overwrite, seed,
                                           ref_model)))

    command.__name__ = f"train_{method}"
    command.__doc__ = TRAINERS[method].help
    return command


for _method in METHODS:
    app.command(_method, epilog=epilog())(_method_command(_method))


def rewards_command(prm: str, samples: Path, out: Path, *, baseline: float = 0.0, batch_size: int = 8,
                    device: str = "auto", dtype: str = "auto") -> TrainExit:
    """Write per-line PRM rewards for every sample with code in ``samples`` to ``out``; prints the
    summary as one JSON line. Exit codes as the train commands (3: no sample with code)."""
    try:
        summary = write_dense_rewards(prm, samples, out, baseline=baseline, batch_size=batch_size,
                                      device=device, dtype=dtype)
    except NoTrainingData as e:
        logger.warning("nothing to score: %s", e)
        return TrainExit.NO_DATA
    except (TrainingDataError, FileNotFoundError, ValueError) as e:
        logger.error("%s", e)
        return TrainExit.BAD_INPUT
    except Exception:
        logger.exception("scoring with the PRM %s failed", prm)
        return TrainExit.FAILED
    print(json.dumps(summary.to_dict()))
    return TrainExit.OK


REWARDS_HELP = ("Dense per-line rewards (arXiv 2410.17621) for a round's samples from a trained PRM: each "
                "line's reward is the PRM's P(good) at its end, divided by the program's line count (for RL "
                "trainers).")
REWARDS_EPILOG = ("Exit codes: 0 written (one JSON summary line on stdout); 1 failed (traceback in the "
                  "log); 2 bad samples file, PRM folder or command line; 3 no sample with code.")


@app.command("rewards", help=REWARDS_HELP, epilog=REWARDS_EPILOG)
def rewards(
    prm: Annotated[str, typer.Option("--prm", help="A PRM folder written by `plumline train prm`.")],
    samples: Annotated[Path, typer.Option("--samples", help="A round's samples.parquet "
                                          "(RUN/round-000/samples.parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write: sample_id, problem_id, round, "
                                      "lines, scores (P(good) at each line's end), rewards.")],
    baseline: Annotated[float, typer.Option("--baseline", help="Subtracted from every score before "
                                            "dividing by the line count: reward = (score - baseline) / "
                                            "lines. 0.5 makes doubtful lines negative.")] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Programs per forward pass.")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA when visible), cpu, cuda, "
                                        "cuda:1...")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto (bfloat16 where the hardware has it), float32, "
                                       "bfloat16, float16.")] = "auto",
    log_level: LogLevelOpt = LogLevel.INFO,
) -> None:
    """``plumline train rewards`` (help above); ``rewards_command`` does the work."""
    logging.basicConfig(level=log_level.value, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise typer.Exit(int(rewards_command(prm, samples, out, baseline=baseline, batch_size=batch_size,
                                         device=device, dtype=dtype)))


def main(argv: list[str] | None = None) -> None:
    """``python -m plumline.trainers dpo|kto ...`` (exits with a ``TrainExit`` code)."""
    app(args=argv, prog_name="python -m plumline.trainers")
