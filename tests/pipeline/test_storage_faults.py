"""A full disk or an unwritable run folder stops the run with a clear message, nothing half-written
is marked done, and a rerun after the cause is gone resumes."""

from __future__ import annotations

import subprocess

import pytest
from plumline.data_schemas import Stage
from plumline.pipeline.errors import RunFolderError, storage_problem
from plumline.pipeline.round import RoundRunner, run_rounds
from test_stages import FAKE_STAGES, _config  # the real table with its work doubled


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs: a disk that fills up (needs root and mount; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_stops_the_stage_and_a_rerun_resumes(tmp_path, tiny_disk):
    cfg = _config(tmp_path)
    run_dir = tiny_disk / "run"
    RoundRunner(cfg, run_dir, 0, stages=FAKE_STAGES).run(until=Stage.SAMPLE)
    filler = tiny_disk / "filler"
    with open(filler, "wb") as fh:  # fill the disk to the last byte
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    with pytest.raises(RunFolderError, match=r"stage (\w+) could not write .*No space left on device") as err:
        RoundRunner(cfg, run_dir, 0, stages=FAKE_STAGES).run()
    failed = Stage(err.value.args[0].split("stage ")[1].split()[0])
    stages = run_dir / "round-000" / ".stages"
    assert (stages / "sample.done").exists() and not (stages / f"{failed.value}.done").exists()
    filler.unlink()
    again = RoundRunner(cfg, run_dir, 0, stages=FAKE_STAGES)
    again.run()
    assert again.ran[0] == failed and Stage.SAMPLE not in again.ran


def test_an_unwritable_run_folder_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RunFolderError, match="cannot write the run folder"):
        run_rounds(_config(tmp_path), blocker / "run")


def test_storage_problems_are_recognised_through_wrapping():
    try:
        try:
            raise OSError(28, "No space left on device", "/x/y.parquet")
        except OSError as inner:
            raise RuntimeError("a Beam worker failed") from inner
    except RuntimeError as outer:
        assert storage_problem(outer) == "No space left on device: /x/y.parquet"
    assert storage_problem(RuntimeError("OSError: [Errno 28] No space left on device")) == \
        "No space left on device"
    assert storage_problem(ValueError("bad value")) is None
