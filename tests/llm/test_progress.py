"""The live progress channel: counters from several processes, added up by the reader."""

from __future__ import annotations

import multiprocessing
import os

from plumline.llm import progress
from plumline.llm.progress import read_progress


def _worker(n: int) -> None:
    for _ in range(n):
        progress.add("executions", 1)


def test_counters_of_several_processes_add_up(tmp_path):
    with progress.channel(tmp_path / "stage") as folder:
        progress.add("executions", 2)
        ctx = multiprocessing.get_context("spawn")  # like Beam's workers: fresh interpreters, same env
        procs = [ctx.Process(target=_worker, args=(5,)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert read_progress(folder) == {"executions": 12}
    assert progress.ENV not in os.environ
    progress.add("executions", 1)  # no channel: nothing happens
    assert read_progress(folder) == {"executions": 12}


def test_a_new_channel_starts_from_zero(tmp_path):
    with progress.channel(tmp_path / "a") as a:
        progress.add("tokens", 10)
    with progress.channel(tmp_path / "a") as again:
        progress.add("tokens", 1)
        assert read_progress(again) == {"tokens": 1}
    assert read_progress(a) == {"tokens": 1}
    assert read_progress(tmp_path / "missing") == {}
