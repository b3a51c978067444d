"""Exit codes of ``plumline train`` / ``python -m plumline.trainers``, shared with their callers
(``pipeline/round.py`` runs training in its own process and reads them)."""

from __future__ import annotations

from enum import IntEnum


class TrainExit(IntEnum):
    OK = 0  # trained; the summary JSON line is on stdout
    FAILED = 1  # anything unexpected (traceback in the log)
    BAD_INPUT = 2  # bad config, data, model folder or command line (message in the log)
    NO_DATA = 3  # no training rows: the online loop skips training for the round


MEANINGS: dict[TrainExit, str] = {
    TrainExit.OK: "trained (one JSON summary line on stdout)",
    TrainExit.FAILED: "failed (traceback in the log)",
    TrainExit.BAD_INPUT: "bad config, data, model folder or command line",
    TrainExit.NO_DATA: "no training rows (the online loop skips training for the round)",
}


def epilog() -> str:
    """The exit codes as a help paragraph."""
    return "Exit codes: " + "; ".join(f"{int(c)} {MEANINGS[c]}" for c in TrainExit) + "."
