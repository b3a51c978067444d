"""The steps of a program for process supervision (arXiv 2410.17621): one step per program line,
with blank and comment lines joined to a neighbour. The PRM labeller splits programs with
``split_steps`` and the PRM trainer and scorer read steps split the same way, so a step index means
the same line everywhere (the labels of ``prm.parquet``, the PRM's scores, the dense rewards).

It lives here, beside the records, because both sides may import ``data_schemas`` and nothing else
they share (transforms and trainers do not import each other).
"""

from __future__ import annotations


def is_code_line(line: str) -> bool:
    """A line that holds code: not blank and not a ``#`` comment. (A line inside a multi-line string
    that starts with ``#`` is taken for a comment; it only moves into a neighbouring step.)"""
    text = line.strip()
    return bool(text) and not text.startswith("#")


def split_steps(code: str) -> list[str]:
    """The steps of ``code``: each step is one code line, preceded by the blank and comment lines
    just above it; blank and comment lines after the last code line join the last step. Trailing
    whitespace of the program is dropped, so ``"\\n".join(split_steps(code)) == code.rstrip()``.

    A program with no code line but some comment is one step; an empty or blank one has none.
    """
    text = code.rstrip()
    if not text:
        return []
    steps: list[str] = []
    pending: list[str] = []  # blank/comment lines waiting for the next code line
    for line in text.split("\n"):
        if is_code_line(line):
            steps.append("\n".join([*pending, line]))
            pending = []
        else:
            pending.append(line)
    if pending:
        if steps:
            steps[-1] = "\n".join([steps[-1], *pending])
        else:
            steps.append("\n".join(pending))
    return steps


def join_steps(steps: list[str] | tuple[str, ...]) -> str:
    """The program text of ``steps`` (the inverse of ``split_steps`` up to trailing whitespace)."""
    return "\n".join(steps)
