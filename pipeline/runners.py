"""Where a stage's Beam pipeline runs and with which options: the ``beam`` section of the run config.

Each stage of a round is its own Beam pipeline (``pipeline/round.py``), so each gets its own runner:

- ``FnApiRunner`` (the default): Beam's local runner, never Prism (the default DirectRunner first tries
  Prism, which downloads a Go binary at run time). Engine stages (tests, sample, eval, prm) run
  in-process: one generation engine serves the machine. CPU stages (read, execute, export) get
  ``beam.cpu_workers`` worker processes; unset, one per core, or none (in-process) for a stage whose
  inputs are small enough that starting the processes would cost more than they save
  (``pipeline/stages.py: stage_processes``).
- ``dask``: the CPU stages run on Apache Beam's DaskRunner against a ``dask.distributed`` cluster:
  ``beam.dask.address``, or a LocalCluster of ``beam.cpu_workers`` worker processes started once per
  process. Engine stages stay in-process on the FnApiRunner (a Dask worker per core would each start
  an engine). Beam 2.77's DaskRunner computes only the last leaf of a graph, mixes a DoFn's tagged
  outputs into one collection, drops what ``finish_bundle`` emits, computes a side input again for
  each reader and has no translation for ``Read``: ``DaskStageRunner`` keeps its options and
  overrides and replaces the graph walk that has those faults. A stage with a transform it cannot run
  (state or timers, splittable or batched DoFns, windows other than the global one, a primitive
  without a translation) runs on the FnApiRunner with multi-process workers instead; a warning names
  the transform and the reason.
- ``DataflowRunner``: every stage is a Dataflow job built from ``beam.dataflow`` (project, region,
  buckets, the worker image of docker/Dockerfile); generation stages put an accelerator resource hint
  on their engine step (``generation_accelerator``) and run one SDK process per worker VM (one engine
  per GPU). Nothing is submitted until the run folder can live on Cloud Storage (``GCS_RUN_FOLDERS``).
- any other name is handed to Beam as ``--runner``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

from plumline.data_schemas import Stage
from plumline.pipeline.errors import BadRunInput
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from plumline.llm import BackendConfig
    from plumline.pipeline.config import RunConfig

log = logging.getLogger(__name__)

FNAPI, DASK, DATAFLOW = "FnApiRunner", "dask", "DataflowRunner"
_ALIASES = {"fnapirunner": FNAPI, "local": FNAPI, "dask": DASK, "daskrunner": DASK,
            "dataflow": DATAFLOW, "dataflowrunner": DATAFLOW}
GENERATION_STAGES = (Stage.TESTS, Stage.SAMPLE, Stage.EVAL, Stage.PRM)  # the table's engine stages
# The run folder is written with local file operations (pipeline/layout.py, round.py), and Dataflow's
# workers can only share it on Cloud Storage: until it can live there, no stage is submitted.
GCS_RUN_FOLDERS = False


def runner_kind(name: str) -> str:
    """``FnApiRunner``, ``dask`` or ``DataflowRunner`` for their spellings; any other name unchanged."""
    return _ALIASES.get(name.strip().lower(), name)


# --- config sections (composed into BeamConfig by pipeline/config.py) ------------------------------


class DaskConfig(BaseModel):
    """``beam.runner: dask``: which dask.distributed cluster runs the CPU stages."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    address: str | None = Field(
        None, description="Scheduler of a running dask.distributed cluster (tcp://host:8786); its workers "
                          "must see the run folder at the same path. None: a LocalCluster of "
                          "beam.cpu_workers worker processes, started once and reused by every stage.")
    partitions: int | None = Field(
        None, ge=1, description="Partitions of a collection after a grouping (how finely execute and "
                                "export spread over workers); None: one per worker, at least.")


class DataflowConfig(BaseModel):
    """``beam.runner: DataflowRunner``: the Google Cloud Dataflow job every stage becomes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    project: str | None = Field(None, description="Google Cloud project the jobs run in (--project).")
    region: str | None = Field(None, description="Dataflow region, e.g. us-central1; GPUs of the "
                                                 "accelerator hint must exist in its zones (--region).")
    temp_location: str | None = Field(None, description="gs:// folder for temporary files (--temp_location).")
    staging_location: str | None = Field(
        None, description="gs:// folder for staged files (--staging_location); None: temp_location's.")
    sdk_container_image: str | None = Field(
        None, description="Worker image built from docker/Dockerfile and pushed to Artifact Registry: "
                          "plumline's wheel, vLLM, bubblewrap, libseccomp (--sdk_container_image).")
    machine_type: str | None = Field(
        None, description="Worker machine of the CPU stages (read, execute, export), e.g. n2-standard-8; "
                          "generation stages take theirs from beam.sampling_accelerator's machine_type.")
    max_num_workers: int | None = Field(None, ge=1,
                                        description="Autoscaling cap per job (--max_num_workers).")
    disk_size_gb: int | None = Field(None, ge=10, description="Boot disk per worker in GB; the vLLM image "
                                                              "needs about 50 (--disk_size_gb).")
    service_account_email: str | None = Field(None, description="Worker service account "
                                                                "(--service_account_email).")
    subnetwork: str | None = Field(None, description="Subnetwork URL or regions/REGION/subnetworks/NAME "
                                                     "(--subnetwork).")
    use_public_ips: bool = Field(True, description="false: workers get private IPs only "
                                                   "(--no_use_public_ips; needs Private Google Access).")


def runner_problems(cfg: RunConfig) -> list[tuple[str, str]]:
    """(dotted field, why) for runner settings that cannot work (checked before any work)."""
    kind = runner_kind(cfg.beam.runner)
    out: list[tuple[str, str]] = []
    if kind == DATAFLOW:
        d = cfg.beam.dataflow
        for name in ("project", "region", "temp_location", "sdk_container_image"):
            if not getattr(d, name):
                out.append((f"beam.dataflow.{name}", "not set, and DataflowRunner needs it"))
        for name in ("temp_location", "staging_location"):
            value = getattr(d, name)
            if value and not value.startswith("gs://"):
                out.append((f"beam.dataflow.{name}",
                            f"{value!r} is not a gs:// path: Dataflow's workers cannot reach it"))
    elif kind == DASK and cfg.beam.dask.address is not None and "://" not in cfg.beam.dask.address:
        out.append(("beam.dask.address",
                    f"{cfg.beam.dask.address!r} is not a scheduler address such as tcp://host:8786"))
    hint = cfg.beam.sampling_accelerator
    if hint is not None and not re.search(r"(^|;)type:", hint):
        out.append(("beam.sampling_accelerator",
                    f"{hint!r} has no type:... part (e.g. type:nvidia-l4;count:1;install-nvidia-driver)"))
    return out


# --- GPU resource hints ---------------------------------------------------------------------------


def stage_engine(cfg: RunConfig, stage: Stage) -> BackendConfig | None:
    """The generation engine a stage holds (tests: the test writer, when tests are written; sample,
    prm: the policy; eval: the evaluated policy), or None."""
    if stage not in GENERATION_STAGES:
        return None
    if stage == Stage.TESTS:
        if not cfg.tests.enabled:
            return None
        return cfg.tests.writer if cfg.tests.writer is not None else cfg.policy
    if stage == Stage.EVAL:
        return cfg.eval.policy(cfg.policy)
    return cfg.policy  # sample, prm (the policy continues line prefixes)


def generation_accelerator(cfg: RunConfig, stage: Stage) -> str | None:
    """The accelerator resource hint of a generation stage's engine step (``stage_engine``):
    ``beam.sampling_accelerator`` when that engine runs inside the pipeline (vllm, transformers). None
    for every other stage, for a remote engine (``kind: openai``: the GPU is the server's) and for tests
    when none are written."""
    hint = cfg.beam.sampling_accelerator
    backend = stage_engine(cfg, stage) if hint else None
    return None if backend is None or backend.kind == "openai" else hint


def with_accelerator(transform: Any, hint: str | None) -> Any:
    """``transform`` with an accelerator resource hint on it and every step inside it (when ``hint``)."""
    return transform.with_resource_hints(accelerator=hint) if hint else transform


# --- the runner and options of one stage ----------------------------------------------------------


def stage_runner(cfg: RunConfig, stage: Stage, *, engine: bool, cpu_workers: int) -> tuple[Any, Any]:
    """(runner, PipelineOptions) for one stage; ``engine``: the stage holds a generation engine."""
    from apache_beam.options.pipeline_options import PipelineOptions

    # Beam workers talk gRPC and the sandbox forks processes from them; gRPC's fork handlers running in
    # such a child have crashed it (SIGSEGV before exec). The workers inherit this environment.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    kind = runner_kind(cfg.beam.runner)
    extra = list(cfg.beam.options)
    if kind in (FNAPI, DASK):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        workers = 1 if engine else cpu_workers
        local = ([f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"] if workers > 1
                 else ["--direct_num_workers=1", "--direct_running_mode=in_memory"])
        if kind == FNAPI:
            return FnApiRunner(), PipelineOptions(local + extra)
        if engine:
            log.info("stage %s holds a generation engine: it runs in-process on the FnApiRunner (one engine "
                     "per machine), not on Dask", stage.value)
            return FnApiRunner(), PipelineOptions(local + extra)
        address = cfg.beam.dask.address or local_dask_cluster(cpu_workers)
        args = [f"--dask_client_address={address}", *local, *extra]
        return dask_stage_runner(stage.value, cfg.beam.dask.partitions), PipelineOptions(args)
    if kind == DATAFLOW:
        if not GCS_RUN_FOLDERS:
            raise BadRunInput(
                f"stage {stage.value}: beam.runner is DataflowRunner, but the run folder ({cfg.out_dir}) is "
                f"on this machine's disk: Dataflow's workers read each stage's inputs from it and write its "
                f"outputs into it, and plumline's run folder cannot be a gs:// path yet. Nothing was "
                f"submitted. The jobs themselves are built and checked offline "
                f"(tests/pipeline/test_dataflow_build.py).")
        return None, PipelineOptions(dataflow_args(cfg, stage, engine=engine) + extra)
    return None, PipelineOptions([f"--runner={cfg.beam.runner}", *extra])


def dataflow_args(cfg: RunConfig, stage: Stage, *, engine: bool, now: float | None = None) -> list[str]:
    """DataflowRunner options of one stage's job, from ``beam.dataflow``.

    The worker image carries plumline's wheel and the Beam SDK (``--sdk_location=container``: nothing is
    staged at submission). A generation stage runs one SDK process per worker VM, so one engine holds
    the GPU (Dataflow otherwise starts one process per vCPU, each loading the model)."""
    d = cfg.beam.dataflow
    args = ["--runner=DataflowRunner", f"--job_name={job_name(cfg.name, stage, now)}",
            "--sdk_location=container"]
    for flag in ("project", "region", "temp_location", "staging_location", "sdk_container_image",
                 "max_num_workers", "disk_size_gb", "service_account_email", "subnetwork"):
        value = getattr(d, flag)
        if value is not None:
            args.append(f"--{flag}={value}")
    if not d.use_public_ips:
        args.append("--no_use_public_ips")
    if engine:
        args.append("--experiments=no_use_multiple_sdk_containers")
    elif d.machine_type:
        args.append(f"--machine_type={d.machine_type}")
    return args


def job_name(run: str, stage: Stage, now: float | None = None) -> str:
    """A Dataflow job name (lowercase letters, digits, dashes; unique per submission)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    base = re.sub(r"[^a-z0-9-]+", "-", f"plumline-{run}-{stage.value}".lower()).strip("-")
    return f"{base[:40].rstrip('-')}-{stamp}"


# --- Dask -----------------------------------------------------------------------------------------

_clusters: dict[int, Any] = {}


def local_dask_cluster(workers: int) -> str:
    """The scheduler address of this process's LocalCluster with ``workers`` single-threaded worker
    processes (started on first use, closed at exit)."""
    cluster = _clusters.get(workers)
    if cluster is None or cluster.status.name != "running":
        from dask.distributed import LocalCluster

        if cluster is not None:  # a cluster that stopped (its scheduler died): start a new one
            log.warning("dask: the LocalCluster of %d workers is %s; starting a new one", workers,
                        cluster.status.name)
            close_dask_clusters()
        start = time.monotonic()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        _clusters[workers] = cluster
        log.info("dask: LocalCluster with %d worker processes at %s (started in %.1f s)", workers,
                 cluster.scheduler_address, time.monotonic() - start)
    return cluster.scheduler_address


@atexit.register
def close_dask_clusters() -> None:
    """Close the LocalClusters this process started."""
    while _clusters:
        _, cluster = _clusters.popitem()
        try:
            cluster.close(timeout=30)
        except Exception:  # at exit, a cluster that will not close must not hide the run's result
            log.debug("closing a dask LocalCluster failed", exc_info=True)


class DaskUnsupported(Exception):
    """A transform the Dask translation cannot run; the stage falls back to the FnApiRunner."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label}: {reason}")
        self.label, self.reason = label, reason


def dask_blocker(pipeline: Any) -> DaskUnsupported | None:
    """The first transform of ``pipeline`` that ``DaskStageRunner`` cannot run, or None."""
    import apache_beam as beam
    from apache_beam.io.iobase import BoundedSource
    from apache_beam.pvalue import PCollection
    from apache_beam.runners.common import DoFnSignature
    from apache_beam.transforms.window import GlobalWindows

    replaced = (beam.Create, beam.io.Read, beam.Reshuffle)  # whole composites the overrides replace

    def check(node: Any) -> DaskUnsupported | None:
        t = node.transform
        for pcoll in node.outputs.values():
            if isinstance(pcoll, PCollection) and not isinstance(pcoll.windowing.windowfn, GlobalWindows):
                return DaskUnsupported(node.full_label, f"windowing {pcoll.windowing.windowfn!r}: only the "
                                                        f"global window is translated")
        if t is not None and type(t) in replaced:
            if type(t) is beam.io.Read and not isinstance(t.source, BoundedSource):
                return DaskUnsupported(node.full_label, f"unbounded source {type(t.source).__name__}")
            return None
        if node.parts:
            for part in node.parts:
                found = check(part)
                if found:
                    return found
            return None
        if t is None or type(t) in (beam.Flatten, beam.GroupByKey):
            return None
        if isinstance(t, beam.ParDo):
            signature = DoFnSignature(t.fn)
            if signature.is_stateful_dofn():
                return DaskUnsupported(node.full_label, "stateful DoFn (state or timers): Beam's DaskRunner "
                                                        "has no state or timers")
            if signature.is_splittable_dofn():
                return DaskUnsupported(node.full_label, "splittable DoFn: no Dask translation")
            if t.fn._process_batch_defined or getattr(t.fn, "_process_yields_batches", False):
                return DaskUnsupported(node.full_label, "batched DoFn (process_batch): no Dask translation")
            if signature.has_bundle_finalization():
                return DaskUnsupported(node.full_label, "bundle finalization: no Dask translation")
            return None
        return DaskUnsupported(node.full_label, f"primitive {type(t).__name__} has no Dask translation")

    return check(pipeline.transforms_stack[0])


def _windowed(value: Any) -> Any:
    from apache_beam.transforms.window import GlobalWindows

    return GlobalWindows.windowed_value(value)


# Everything a Dask task gets from the Beam graph travels pickled (Beam's pickler): a plain tuple or
# list in a Dask graph can be read as a task (a tuple starting with a callable is one).

def _run_bundle(items: Any, payload: bytes, label: str, *side_values: list) -> list:
    """One Dask partition through one DoFn: setup, start_bundle, process each, finish_bundle, teardown.
    Returns (tag, value) for every output, including what finish_bundle emits (tag None: main).
    ``payload``: the pickled (DoFn, args, kwargs, side input views); ``side_values``: each side input's
    elements, in the order of the views."""
    items = list(items)
    if not items:
        return []
    from apache_beam import DoFn
    from apache_beam.internal import pickler
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
    from apache_beam.transforms.sideinputs import SideInputMap
    from apache_beam.transforms.window import GlobalWindows

    out: list[tuple[Any, Any]] = []

    class Collect(Receiver):
        def __init__(self, tag: Any):
            self.tag = tag

        def receive(self, windowed_value: Any) -> None:
            out.append((self.tag, windowed_value.value))

    class Receivers(dict):
        def __missing__(self, tag: Any) -> Collect:
            receiver = self[tag] = Collect(tag)
            return receiver

    fn, args, kwargs, views = pickler.loads(payload)  # a fresh DoFn per bundle, as on Beam's workers
    receivers = Receivers()
    handler = _OutputHandler(window_fn=GlobalWindows(), main_receivers=receivers[None],
                             tagged_receivers=receivers, per_element_output_counter=None,
                             output_batch_converter=None, process_yields_batches=False,
                             process_batch_yields_elements=False)
    maps = [SideInputMap(view, options, [_windowed(v) for v in values])
            for (view, options), values in zip(views, side_values, strict=True)]
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(label, state=None), side_inputs=maps,
        input_args=args, input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    try:
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(_windowed(item))
        invoker.invoke_finish_bundle()
    finally:
        invoker.invoke_teardown()
    return out


def _select(tag: Any, part: list) -> list:
    return [value for t, value in part if t == tag]


def _unpickle(blobs: Any) -> list:
    from apache_beam.internal import pickler

    return [value for blob in blobs for value in pickler.loads(blob)]


def _read_bundles(bundles: Any) -> list:
    out: list = []
    for bundle in bundles:
        tracker = bundle.source.get_range_tracker(bundle.start_position, bundle.stop_position)
        out.extend(bundle.source.read(tracker))
    return out


def _concat(parts: Any) -> list:
    return [value for part in parts for value in part]


def _group(part: Any) -> list:
    return [(key, [value for _, value in kvs]) for key, kvs in part]


def _key(kv: Any) -> Any:
    return kv[0]


def _count(part: Any) -> list:
    return [sum(1 for _ in part)]


def _set_env(env: dict[str, str]) -> None:
    os.environ.update(env)


class _Translation:
    """A Beam graph (after the Dask overrides) as Dask bags, one per PCollection, forming one Dask graph:
    computed in one call, each task runs once however many branches read its result."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.bags: dict[Any, Any] = {}
        self.consumed: set[Any] = set()
        self.wholes: dict[Any, Any] = {}
        self.dofns = 0

    def walk(self, node: Any) -> None:
        for part in node.parts:
            self.walk(part)
        if not node.parts and node.transform is not None:
            self.translate(node)

    def _from_values(self, values: list, partitions: int) -> Any:
        import dask.bag as db
        from apache_beam.internal import pickler

        n = max(1, min(len(values), partitions))
        chunks = [values[i * len(values) // n:(i + 1) * len(values) // n] for i in range(n)]
        return db.from_sequence([pickler.dumps(c) for c in chunks], npartitions=n).map_partitions(_unpickle)

    def _whole(self, pcoll: Any) -> Any:
        """A collection as one value (a list) for side inputs, made once per collection. A Delayed over
        the partitions' own keys: an ``Item`` passed to ``map_partitions`` gets its keys renamed (Dask's
        ProhibitReuse), so each reader would compute the collection again."""
        if pcoll not in self.wholes:
            import dask

            parts = self.bags[pcoll].to_delayed(optimize_graph=False)
            self.wholes[pcoll] = dask.delayed(_concat, pure=True)(parts)
        return self.wholes[pcoll]

    def translate(self, node: Any) -> None:
        import apache_beam as beam
        import dask.bag as db
        from apache_beam.internal import pickler
        from apache_beam.pvalue import PCollection
        from apache_beam.runners.dask.overrides import _Create, _Flatten, _GroupByKeyOnly, _Read, _Reshuffle

        t = node.transform
        inputs = [self.bags[pc] for pc in node.inputs if isinstance(pc, PCollection)]
        self.consumed.update(pc for pc in node.inputs if isinstance(pc, PCollection))
        self.consumed.update(si.pvalue for si in node.side_inputs)
        outputs = {tag: pc for tag, pc in node.outputs.items() if isinstance(pc, PCollection)}
        if isinstance(t, _Create):
            bag = self._from_values(list(t.values), self.partitions)
        elif isinstance(t, _Read):
            bundles = list(t.source.split(desired_bundle_size=64 << 20))
            bag = (self._from_values(bundles, len(bundles)).map_partitions(_read_bundles) if bundles
                   else db.from_sequence([], npartitions=1))
        elif isinstance(t, _Reshuffle):
            bag = inputs[0]
        elif isinstance(t, _Flatten):
            bag = db.concat(inputs) if inputs else db.from_sequence([], npartitions=1)
        elif isinstance(t, _GroupByKeyOnly):
            bag = inputs[0]
            if bag.npartitions < self.partitions:
                bag = bag.repartition(npartitions=self.partitions)
            # shuffle="tasks": keys are placed by a content hash, the same in every worker process
            # (the disk shuffle hashes with Python's per-process hash()).
            bag = bag.groupby(_key, shuffle="tasks").map_partitions(_group)
        elif isinstance(t, beam.ParDo):
            # Side inputs are whole collections handed to every bundle, as dependencies in the graph.
            views = [(type(si), si._view_options()) for si in node.side_inputs]
            sides = [self._whole(si.pvalue) for si in node.side_inputs]
            payload = pickler.dumps((t.fn, list(t.args), dict(t.kwargs), views))
            tagged = inputs[0].map_partitions(_run_bundle, payload, node.full_label, *sides)
            self.dofns += 1
            for tag, pcoll in outputs.items():
                tag = None if tag in (None, "None") else tag  # the main output
                self.bags[pcoll] = tagged.map_partitions(functools.partial(_select, tag))
            return
        else:  # dask_blocker rules these out before the graph is touched
            raise DaskUnsupported(node.full_label, f"primitive {type(t).__name__} has no Dask translation")
        for pcoll in outputs.values():
            self.bags[pcoll] = bag

    def sinks(self) -> list[Any]:
        """Every collection nothing reads: computing them all runs every branch of the graph."""
        return [bag for pcoll, bag in self.bags.items() if pcoll not in self.consumed]


def _dask_overrides() -> list[Any]:
    """Beam's Dask overrides, except its GroupByKey (ReifyWindows + GroupAlsoByWindow around the
    grouping): with only the global window (``dask_blocker``), the grouping alone is the whole GBK."""
    import apache_beam as beam
    from apache_beam.pipeline import PTransformOverride
    from apache_beam.runners.dask.overrides import _GroupByKeyOnly, dask_overrides

    class GroupByKeyOverride(PTransformOverride):
        def matches(self, applied: Any) -> bool:
            return applied.transform.__class__ == beam.GroupByKey

        def get_replacement_transform_for_applied_ptransform(self, applied: Any) -> Any:
            return _GroupByKeyOnly()

    return [o for o in dask_overrides() if type(o).__name__ != "GroupByKeyOverride"] + [GroupByKeyOverride()]


def dask_stage_runner(stage: str, partitions: int | None = None) -> Any:
    """A ``DaskStageRunner`` (Beam's DaskRunner with the fixes above) for one stage."""
    return _dask_stage_runner_class()(stage, partitions)


@functools.cache
def _dask_stage_runner_class() -> type:
    # Defined on first use: a module-level subclass would import Beam and Dask with the config.
    from apache_beam.runners.dask.dask_runner import DaskRunner

    class DaskStageRunner(DaskRunner):
        """Apache Beam's DaskRunner (its options, overrides and Create translation) with a graph walk that
        runs every branch, keeps tagged outputs apart, keeps finish_bundle's output, computes each side
        input once, and reads bounded sources. A pipeline it cannot run goes to the FnApiRunner with the
        options' multi-process workers, and a warning names the transform and the reason."""

        run_pipeline = _run_stage_pipeline

        def __init__(self, stage: str = "", partitions: int | None = None):
            super().__init__()
            self.stage, self.partitions = stage, partitions
            self.ran_on: str | None = None  # "dask" or "FnApiRunner" once the pipeline ran

    return DaskStageRunner


def _run_stage_pipeline(self: Any, pipeline: Any, options: Any) -> Any:
    """``DaskStageRunner.run_pipeline``: on Dask, or on the FnApiRunner when a transform cannot run there."""
    blocker = dask_blocker(pipeline)
    if blocker is not None:
        from apache_beam.options.pipeline_options import DirectOptions
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        workers = options.view_as(DirectOptions).direct_num_workers
        log.warning("stage %s: transform %r cannot run on Beam's DaskRunner (%s); the stage runs on the "
                    "FnApiRunner with %s worker processes instead", self.stage, blocker.label, blocker.reason,
                    workers)
        self.ran_on = FNAPI
        return FnApiRunner().run_pipeline(pipeline, options)
    import dask.distributed as ddist
    from apache_beam.runners.dask.dask_runner import DaskOptions
    from plumline.llm.progress import ENV as PROGRESS_ENV

    dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
    DaskOptions._extract_bag_kwargs(dask_options)  # drops --dask_npartitions: beam.dask.partitions rules
    start = time.monotonic()
    with ddist.Client(**dask_options, set_as_default=False) as client:
        workers = max(1, len(client.scheduler_info()["workers"]))
        # the stage's environment (progress channel, gRPC fork setting) on every worker
        client.run(_set_env, {k: os.environ[k] for k in (PROGRESS_ENV, "GRPC_ENABLE_FORK_SUPPORT")
                              if k in os.environ})
        pipeline.replace_all(_dask_overrides())
        graph = _Translation(self.partitions or workers)
        graph.walk(pipeline.transforms_stack[0])
        sinks = [bag.map_partitions(_count) for bag in graph.sinks()]
        for future in client.compute(sinks):  # one graph: a step read by several branches runs once
            future.result()  # the first failure on a worker is raised here, with its traceback
    self.ran_on = DASK
    log.info("stage %s ran on Dask: %d DoFn steps on %d workers in %.1f s", self.stage, graph.dofns, workers,
             time.monotonic() - start)
    return _done_result()


@functools.cache
def _done_result_class() -> type:
    from apache_beam.runners.runner import PipelineResult, PipelineState

    class DoneResult(PipelineResult):
        """A finished run (the Dask graph is computed before run_pipeline returns)."""

        def __init__(self):
            super().__init__(PipelineState.DONE)

        def wait_until_finish(self, duration: Any = None) -> Any:
            return self._state

        def metrics(self) -> Any:
            raise NotImplementedError("Beam metrics are not collected on Dask")

    return DoneResult


def _done_result() -> Any:
    return _done_result_class()()
