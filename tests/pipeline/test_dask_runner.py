"""``beam.runner: dask``: the CPU stages on Apache Beam's DaskRunner against a dask.distributed
LocalCluster of worker processes (pipeline/runners.py). The same config gives the same dataset as on
the FnApiRunner; every Beam feature the stages use works on Dask (several outputs and sinks, what
finish_bundle emits, side inputs computed once, Parquet reads, groupings); a transform the Dask
translation cannot run sends its stage to the FnApiRunner, and a warning names it and why."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.window import FixedWindows
from plumline.data_schemas import comparable_rows
from plumline.pipeline.config import ConfigError, load_config
from plumline.pipeline.runners import DASK, FNAPI, dask_blocker, dask_stage_runner, local_dask_cluster

WORKERS = 2


@pytest.fixture(scope="module")
def cluster() -> str:
    """The scheduler of this process's LocalCluster (2 single-threaded worker processes), as runs use."""
    return local_dask_cluster(WORKERS)


def _options(address: str) -> PipelineOptions:
    # the fallback's options, as stage_runner gives them: FnApiRunner in-process here (fast)
    return PipelineOptions([f"--dask_client_address={address}", "--direct_num_workers=1",
                            "--direct_running_mode=in_memory"])


def _lines(prefix: Path) -> list[str]:
    return sorted(line for f in prefix.parent.glob(prefix.name + "*") for line in f.read_text().splitlines())


# --- module-level functions: they travel to the Dask workers by reference --------------------------


def _split(n: int):
    yield beam.pvalue.TaggedOutput("odd", n) if n % 2 else n


class _PairUp(beam.DoFn):
    """Emits in finish_bundle what process buffered (as BatchElements does)."""

    def start_bundle(self):
        self._held = []

    def process(self, n):
        self._held.append(n)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for n in self._held:
            yield WindowedValue(("held", n), 0, [GlobalWindow()])


def _mark_once(_, folder: str) -> str:
    """A side effect per call: a file in ``folder``; the side input it feeds must be computed once."""
    path = Path(folder) / f"{os.getpid()}-{os.urandom(4).hex()}"
    path.write_text("")
    return "init"


def _with(n: int, names: dict, tag: str, evens: list) -> str:
    return f"{n}:{names.get(n, '-')}:{tag}:{len(evens)}"


class _Stateful(beam.DoFn):
    SEEN = BagStateSpec("seen", beam.coders.VarIntCoder())

    def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):  # noqa: B008  Beam's way to ask for state
        seen.add(kv[1])
        yield kv[0], sorted(seen.read())


# --- the runner on its own ---------------------------------------------------------------------


def test_the_beam_features_the_stages_use_run_on_dask(tmp_path, cluster):
    marks = tmp_path / "marks"
    marks.mkdir()
    table = pa.table({"n": list(range(6)), "name": [f"n{i}" for i in range(6)]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=2)
    out = tmp_path / "out"
    runner = dask_stage_runner("features", partitions=3)
    with beam.Pipeline(runner=runner, options=_options(cluster)) as p:
        nums = p | "Nums" >> beam.Create(range(10)) | "Spread" >> beam.Reshuffle()
        split = nums | "Split" >> beam.FlatMap(_split).with_outputs("odd", main="even")
        # two outputs of one step, each to its own sink: both are written, neither holds the other's
        split.even | "EvenText" >> beam.Map(str) | "WriteEven" >> beam.io.WriteToText(
            str(out / "even"), num_shards=1, shard_name_template="")
        split.odd | "OddText" >> beam.Map(str) | "WriteOdd" >> beam.io.WriteToText(
            str(out / "odd"), num_shards=1, shard_name_template="")
        held = nums | "PairUp" >> beam.ParDo(_PairUp())
        held | "HeldText" >> beam.Map(json.dumps) | "WriteHeld" >> beam.io.WriteToText(str(out / "held"))
        # a side input read by three steps is computed once; AsDict from a Parquet read; AsList
        init = p | "Once" >> beam.Create([None]) | "Init" >> beam.Map(_mark_once, str(marks))
        names = (p | "ReadParquet" >> beam.io.ReadFromParquet(str(tmp_path / "in.parquet"))
                 | "ById" >> beam.Map(lambda row: (row["n"], row["name"])))
        joined = split.even | "Join" >> beam.Map(
            _with, beam.pvalue.AsDict(names), beam.pvalue.AsSingleton(init), beam.pvalue.AsList(split.even))
        again = split.odd | "Again" >> beam.Map(lambda n, tag: f"{n}:{tag}", beam.pvalue.AsSingleton(init))
        (joined, again) | "Both" >> beam.Flatten() | "WriteJoined" >> beam.io.WriteToText(str(out / "joined"))
        # groupings: GroupByKey, CoGroupByKey, Partition, a global count
        grouped = ({"a": nums | "KeyA" >> beam.Map(lambda n: (n % 3, n)),
                    "b": names | "KeyB" >> beam.Map(lambda kv: (kv[0] % 3, kv[1]))}
                   | "CoGroup" >> beam.CoGroupByKey()
                   | "Sorted" >> beam.Map(lambda kv: json.dumps([kv[0], sorted(kv[1]["a"]),
                                                                 sorted(kv[1]["b"])])))
        grouped | "WriteGrouped" >> beam.io.WriteToText(str(out / "grouped"))
        parts = nums | "Part" >> beam.Partition(lambda n, k: int(n >= 7), 2)
        parts[1] | "Count" >> beam.combiners.Count.Globally() | "CountText" >> beam.Map(str) \
            | "WriteCount" >> beam.io.WriteToText(str(out / "count"))
    assert runner.ran_on == DASK
    assert _lines(out / "even") == ["0", "2", "4", "6", "8"]
    assert _lines(out / "odd") == ["1", "3", "5", "7", "9"]
    assert sorted(json.loads(x)[1] for x in _lines(out / "held")) == list(range(10))
    assert len(list(marks.iterdir())) == 1  # Init ran once for its three readers
    evens = [f"{n}:{'n' + str(n) if n < 6 else '-'}:init:5" for n in (0, 2, 4, 6, 8)]
    assert _lines(out / "joined") == sorted(evens + [f"{n}:init" for n in (1, 3, 5, 7, 9)])
    assert [json.loads(x) for x in _lines(out / "grouped")] == [
        [0, [0, 3, 6, 9], ["n0", "n3"]], [1, [1, 4, 7], ["n1", "n4"]], [2, [2, 5, 8], ["n2", "n5"]]]
    assert _lines(out / "count") == ["3"]
    assert not list(out.glob("beam-temp-*"))  # every write finalized its own temporary folder


def test_a_transform_dask_cannot_run_sends_its_stage_to_the_fnapi_runner(tmp_path, cluster, caplog):
    runner = dask_stage_runner("execute")
    with (caplog.at_level(logging.WARNING, logger="plumline.pipeline.runners"),
          beam.Pipeline(runner=runner, options=_options(cluster)) as p):
        (p | beam.Create([("k", 1), ("k", 2)]) | "Remember" >> beam.ParDo(_Stateful())
         | beam.Map(json.dumps) | beam.io.WriteToText(str(tmp_path / "out")))
    assert runner.ran_on == FNAPI
    assert sorted(json.loads(x)[1] for x in _lines(tmp_path / "out")) == [[1], [1, 2]]
    (warning,) = [m for m in caplog.messages if "cannot run on Beam's DaskRunner" in m]
    assert "stage execute: transform 'Remember'" in warning and "stateful DoFn" in warning
    assert "runs on the FnApiRunner" in warning


@pytest.mark.parametrize(("build", "label", "reason"), [
    (lambda p: p | beam.Create([("k", 1)]) | "Remember" >> beam.ParDo(_Stateful()),
     "Remember", "stateful DoFn"),
    (lambda p: p | beam.Create([1]) | "Hourly" >> beam.WindowInto(FixedWindows(3600)) | beam.Map(str),
     "Hourly", "only the global window"),
    (lambda p: p | "Bare" >> beam.Impulse(), "Bare", "primitive Impulse has no Dask translation"),
])
def test_what_dask_cannot_run_is_named_before_anything_runs(build, label, reason):
    p = beam.Pipeline()
    build(p)
    blocker = dask_blocker(p)
    assert blocker is not None and blocker.label == label and reason in blocker.reason, blocker


def test_the_stages_graph_features_pass_the_check():
    p = beam.Pipeline()
    nums = p | beam.Create([1, 2]) | beam.Reshuffle()
    keyed = nums | beam.Map(lambda n: (n, n)) | beam.GroupByKey()
    (keyed, nums | beam.Map(lambda n: (n, [n]))) | beam.Flatten() | beam.Map(str, beam.pvalue.AsList(nums))
    assert dask_blocker(p) is None


def test_runner_settings_are_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{path: bundled:easy}]\npolicy: {model: m}\n")
    cfg = load_config(path, ["beam.runner=dask", "beam.dask.address=tcp://10.0.0.5:8786"])
    assert cfg.beam.runner == "dask" and cfg.beam.dask.address == "tcp://10.0.0.5:8786"
    with pytest.raises(ConfigError, match="beam.dask.address: '10.0.0.5' is not a scheduler address"):
        load_config(path, ["beam.runner=dask", "beam.dask.address=10.0.0.5"])


# --- a whole round ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_config_gives_the_same_dataset_on_dask_and_on_the_fnapi_runner(canned_round, caplog):
    local = canned_round("FnApiRunner", workers=WORKERS, runner="FnApiRunner")
    with caplog.at_level(logging.INFO, logger="plumline.pipeline.runners"):
        dask = canned_round("dask", workers=WORKERS, runner="dask")
    messages = caplog.messages
    for stage in ("read", "execute", "export"):  # the CPU stages ran on Dask, none fell back
        assert any(m.startswith(f"stage {stage} ran on Dask") for m in messages), (stage, messages)
    assert not any("cannot run on Beam's DaskRunner" in m for m in messages), messages
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*.parquet"))
    assert files == sorted(str(p.relative_to(dask)) for p in dask.rglob("*.parquet"))
    for name in ("problems", "tests", "samples", "executions", "dpo", "kto", "critic"):
        assert f"{name}.parquet" in files, name
    assert all(pq.read_table(local / f"{name}.parquet").num_rows > 0 for name in ("dpo", "kto", "critic"))
    for name in files:  # every file, the stages' own (.stages/) included, row for row
        a, b = pq.read_table(local / name), pq.read_table(dask / name)
        assert a.schema.equals(b.schema) and comparable_rows(a) == comparable_rows(b), name
    for name in ("errors.jsonl", "dpo.jsonl", "kto.jsonl", "critic.jsonl"):
        assert (local / name).read_bytes() == (dask / name).read_bytes(), name
    assert not list(dask.rglob("beam-temp-*"))  # every write finalized
