"""``plumline train``: the plain function the pipeline's typer CLI mounts, plus an argparse entry
(``python -m plumline.trainers dpo|kto ...``) that the online loop spawns as a separate process.

Exit codes: 0 trained, 2 bad config or data (message on stderr), 3 no training data (the loop
skips training for the round), 1 anything else (traceback logged).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Literal

from .base import NoTrainingData, TrainingConfigError, TrainingDataError, load_config

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_DATA = 3

METHODS = ("dpo", "kto")


def train_command(method: Literal["dpo", "kto"], data: list[Path], model: str, out: Path,
                  config: Path | None = None, overrides: list[str] | None = None,
                  overwrite: bool = False) -> int:
    """Train ``model`` on ``data`` (Parquet exports) with ``method``; save to ``out``.

    ``config`` is a YAML file: the method's section itself, or a full plumline config holding it
    under ``<method>`` or ``train.<method>``. ``overrides`` are ``dotted.key=value`` strings
    (``beta=0.2``, ``lora.r=8``, ``extra_args.weight_decay=0.01``). Returns an exit code; prints
    the training report's path and summary as one JSON line on stdout.
    """
    if method not in METHODS:
        logger.error("unknown method %r; choose from %s", method, list(METHODS))
        return EXIT_BAD_INPUT
    try:
        if method == "dpo":
            from .dpo import DpoTrainingConfig, train_dpo

            cfg = load_config(DpoTrainingConfig, "dpo", config, overrides or [])
            report = train_dpo(list(data), model, Path(out), cfg, overwrite=overwrite)
        else:
            from .kto import KtoTrainingConfig, train_kto

            cfg = load_config(KtoTrainingConfig, "kto", config, overrides or [])
            report = train_kto(list(data), model, Path(out), cfg, overwrite=overwrite)
    except NoTrainingData as e:
        logger.warning("no training data: %s", e)
        return EXIT_NO_DATA
    except (TrainingConfigError, TrainingDataError, FileNotFoundError, FileExistsError) as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    except Exception:
        logger.exception("%s training failed", method)
        return EXIT_FAILED
    print(json.dumps({"output_dir": report.output_dir, "steps": report.steps,
                      "train_loss": report.train_loss, "runtime_s": report.runtime_s,
                      "train_rows": report.train_rows}))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m plumline.trainers",
                                description="Train a policy with TRL on plumline's Parquet exports.")
    p.add_argument("method", choices=METHODS)
    p.add_argument("--data", type=Path, nargs="+", required=True, help="Parquet file(s) (dpo or kto export)")
    p.add_argument("--model", required=True, help="policy folder (or hub id)")
    p.add_argument("--out", type=Path, required=True, help="where the trained model goes")
    p.add_argument("--config", type=Path, default=None, help="YAML config (section or full config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set beta=0.2 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return train_command(args.method, args.data, args.model, args.out, args.config, args.overrides,
                         args.overwrite)
