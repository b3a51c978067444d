"""``plumline train dpo|kto``: one typer sub-app, mounted on ``plumline`` and run on its own by
``python -m plumline.trainers`` (the online loop trains in a separate process to free the GPU).

``train_command`` is the plain function behind both commands; it returns a ``TrainExit``.
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
from .data import NoTrainingData, TrainingDataError
from .dpo import DpoTrainingConfig, train_dpo
from .exit_codes import TrainExit, epilog
from .kto import KtoTrainingConfig, train_kto
from .output import TrainingReport

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
                  help="Train the policy with TRL on a round's Parquet export (DPO or KTO).")

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


def main(argv: list[str] | None = None) -> None:
    """``python -m plumline.trainers dpo|kto ...`` (exits with a ``TrainExit`` code)."""
    app(args=argv, prog_name="python -m plumline.trainers")
