"""Every stage's Beam pipeline, built with DataflowRunner options and taken through what DataflowRunner
does before it submits (offline: nothing is sent): its graph checks and overrides, the portable proto
with the worker image as environment. Every transform and DoFn must pickle and load back in a fresh
interpreter (as on a worker with plumline's wheel installed), and the accelerator hint must sit on the
engine step of the generation stages and nowhere else. With the ``dataflow`` extra installed, Beam's
own DataflowRunner also builds each Dataflow job (``--dry_run``). The wheel shipped to the workers is
built and checked for its package data, and docker/Dockerfile against the versions it must match."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner, _check_and_add_missing_options
from apache_beam.transforms import environments
from plumline.data_schemas import Stage
from plumline.pipeline.artifacts import ARTIFACTS
from plumline.pipeline.config import load_config
from plumline.pipeline.errors import BadRunInput
from plumline.pipeline.layout import RoundLayout
from plumline.pipeline.runners import GENERATION_STAGES, dataflow_args, stage_runner
from plumline.pipeline.stages import STAGES, StageContext

ROOT = Path(__file__).resolve().parents[2]
ACCELERATOR = common_urns.resource_hints.ACCELERATOR.urn
HINT = "type:nvidia-l4;count:1;machine_type:g2-standard-8;install-nvidia-driver"
IMAGE = "us-central1-docker.pkg.dev/test-project/plumline/worker:test"
BUILT = [s for s in STAGES if s.build is not None]
# The step of each generation stage that calls the engine (labels from pipeline/stages.py and transforms/).
ENGINE_STEP = {Stage.TESTS: "SynthesizeTests/WriteTests", Stage.SAMPLE: "SampleSolutions/Generate",
               Stage.EVAL: "Evaluate/Generate", Stage.PRM: "LabelSteps/Label"}


def _config(tmp_path: Path, *extra: str):
    """A config with every stage on (tests written by the in-process policy, eval on) for DataflowRunner."""
    path = tmp_path / "run.yaml"
    path.write_text(f"""
name: df-build
out_dir: {tmp_path / 'runs'}
sources: [{{path: bundled:easy, limit: 4}}]
policy: {{kind: vllm, model: org/some-model}}
eval: {{sources: [{{path: bundled:easy-eval, limit: 3}}]}}
prm: {{enabled: true}}
beam:
  runner: DataflowRunner
  sampling_accelerator: "{HINT}"
  dataflow: {{project: test-project, region: us-central1, temp_location: gs://test-bucket/tmp,
             sdk_container_image: "{IMAGE}", machine_type: n2-standard-8, max_num_workers: 4}}
""")
    return load_config(path, list(extra))


def _round_with_inputs(tmp_path: Path, cfg) -> RoundLayout:
    """A round folder in which every artifact a stage reads exists (empty, typed): Beam's Parquet
    source checks its files when the graph is built."""
    layout = RoundLayout(tmp_path / "runs" / cfg.name, 0)
    for name, art in ARTIFACTS.items():
        if art.is_folder:
            continue
        path = layout.artifact_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(art.record_type(cfg).arrow_schema().empty_table(), path)
    return layout


def _build(cfg, layout: RoundLayout, spec, extra: tuple[str, ...] = ()) -> tuple[beam.Pipeline, Any]:
    # --dry_run: with the dataflow extra installed, Beam otherwise asks Cloud Storage about the buckets
    # while it checks the options (and waits for the network)
    options = PipelineOptions(dataflow_args(cfg, spec.name, engine=spec.engine) + ["--dry_run=True", *extra])
    p = beam.Pipeline(options=options)
    ctx = StageContext(cfg=cfg, round=0, layout=layout, stage=spec.name, pipeline=p,
                       policy_model=cfg.policy.model, key="k")
    spec.build(ctx)
    ctx.write_errors()
    return p, options


def _dataflow_proto(p: beam.Pipeline, options: PipelineOptions) -> beam_runner_api_pb2.Pipeline:
    """What DataflowRunner.run_pipeline does before it needs Google Cloud: option defaults, side input
    and combiner rewrites, its overrides, the GroupByKey key checks, and the portable proto with the
    worker image as the default environment (resource hints of the pipeline included)."""
    runner = DataflowRunner()
    _check_and_add_missing_options(options)
    p.visit(DataflowRunner.combinefn_visitor())
    p.visit(DataflowRunner.side_input_visitor(deterministic_key_coders=True))
    p.replace_all(DataflowRunner._PTRANSFORM_OVERRIDES)
    runner._adjust_pipeline_for_dataflow_v2(p)
    env = environments.DockerEnvironment.from_container_image(
        IMAGE, artifacts=environments.python_sdk_dependencies(options),
        resource_hints=environments.resource_hints_from_options(options))
    return p.to_runner_api(default_environment=env)


def _pickled_payloads(proto: beam_runner_api_pb2.Pipeline) -> dict[str, bytes]:
    """label -> every pickled Python object the workers load: transforms, DoFns, CombineFns, WindowFns
    and side input view functions."""
    out: dict[str, bytes] = {}
    urns = common_urns
    combines = {urns.composites.COMBINE_PER_KEY.urn, urns.composites.COMBINE_GLOBALLY.urn,
                urns.combine_components.COMBINE_GROUPED_VALUES.urn}
    for t in proto.components.transforms.values():
        specs = {"": t.spec}
        if t.spec.urn == urns.primitives.PAR_DO.urn:
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            specs["do_fn"] = pardo.do_fn
            for tag, si in pardo.side_inputs.items():
                specs[f"side_input {tag} view_fn"] = si.view_fn
                specs[f"side_input {tag} window_mapping_fn"] = si.window_mapping_fn
        elif t.spec.urn in combines:
            specs["combine_fn"] = beam_runner_api_pb2.CombinePayload.FromString(t.spec.payload).combine_fn
        elif t.spec.urn == urns.primitives.ASSIGN_WINDOWS.urn:
            specs["window_fn"] = beam_runner_api_pb2.WindowIntoPayload.FromString(t.spec.payload).window_fn
        for what, spec in specs.items():
            if "pickled_python" in spec.urn and spec.payload:
                out[f"{t.unique_name} {what}".strip()] = spec.payload
    return out


class _PickleEveryTransform(beam.pipeline.PipelineVisitor):
    """Every transform of the graph through Beam's pickler and back (Beam's own check before a runner
    API round trip); failures are collected with their labels."""

    def __init__(self):
        self.seen, self.failed = 0, []

    def visit_transform(self, node):
        self.seen += 1
        try:
            pickler.loads(pickler.dumps(node.transform))
        except Exception as exc:  # noqa: BLE001  reported with the transform's label
            self.failed.append(f"{node.full_label}: {type(exc).__name__}: {exc}")


def _accelerator_steps(proto: beam_runner_api_pb2.Pipeline) -> dict[str, bytes]:
    envs = proto.components.environments
    return {t.unique_name: envs[t.environment_id].resource_hints[ACCELERATOR]
            for t in proto.components.transforms.values()
            if t.environment_id and ACCELERATOR in envs[t.environment_id].resource_hints}


def test_every_stage_builds_for_dataflow_pickles_and_hints_gpus_on_engine_steps_only(tmp_path):
    cfg = _config(tmp_path)
    layout = _round_with_inputs(tmp_path, cfg)
    payloads: dict[str, bytes] = {}
    for spec in BUILT:
        p, options = _build(cfg, layout, spec)
        visitor = _PickleEveryTransform()
        p.visit(visitor)
        assert visitor.seen > 10 and visitor.failed == [], (spec.name, visitor.failed)
        proto = _dataflow_proto(p, options)
        # Everything loads back from the proto, as a worker does (every DoFn unpickled).
        beam.Pipeline.from_runner_api(proto, p.runner, options)
        found = _pickled_payloads(proto)
        assert found, spec.name
        payloads.update({f"{spec.name.value}:{k}": v for k, v in found.items()})

        hinted = _accelerator_steps(proto)
        assert spec.engine == (spec.name in GENERATION_STAGES), spec.name  # the table and the hints agree
        if spec.engine:
            engine = ENGINE_STEP[spec.name]
            assert engine in hinted and hinted[engine] == HINT.encode(), (spec.name, sorted(hinted))
            # on the engine's composite only: reads, writes, the error file stay on CPU workers
            composite = engine.split("/")[0]
            assert all(label == composite or label.startswith(composite + "/") for label in hinted), \
                (spec.name, sorted(hinted))
        else:
            assert hinted == {}, (spec.name, sorted(hinted))
        assert proto.components.environments, spec.name
        images = {beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
                  for e in proto.components.environments.values()
                  if e.urn == common_urns.environments.DOCKER.urn}
        assert images == {IMAGE}, images
    assert {k.split(":")[0] for k in payloads} == {s.name.value for s in BUILT}

    # A fresh interpreter loads every pickled DoFn, CombineFn and WindowFn: nothing refers to the test
    # process (its __main__, a local class); only plumline and Beam must be installed, as on the workers.
    dump = tmp_path / "payloads.txt"
    dump.write_text("\n".join(f"{k}\t{base64.b64encode(v).decode()}" for k, v in payloads.items()))
    code = ("import base64, sys\nfrom apache_beam.internal import pickler\n"
            "for line in open(sys.argv[1]):\n    label, data = line.rstrip('\\n').split('\\t')\n"
            "    pickler.loads(base64.b64decode(data))\nprint('loaded', sum(1 for _ in open(sys.argv[1])))\n")
    r = subprocess.run([sys.executable, "-c", code, str(dump)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"loaded {len(payloads)}"


def test_a_remote_engine_gets_no_gpu(tmp_path):
    """A policy behind an OpenAI-compatible server holds no GPU in the pipeline: no hint anywhere."""
    cfg = _config(tmp_path, "policy.kind=openai", "policy.base_url=http://llm:8000/v1",
                  "policy.endpoint=completions")
    layout = _round_with_inputs(tmp_path, cfg)
    for spec in BUILT:
        p, options = _build(cfg, layout, spec)
        assert _accelerator_steps(_dataflow_proto(p, options)) == {}, spec.name


def test_dataflow_options_per_stage(tmp_path):
    cfg = _config(tmp_path)
    args = {s.name: dataflow_args(cfg, s.name, engine=s.engine, now=0) for s in BUILT}
    for stage, a in args.items():
        assert {"--runner=DataflowRunner", "--project=test-project", "--region=us-central1",
                "--temp_location=gs://test-bucket/tmp", f"--sdk_container_image={IMAGE}",
                "--sdk_location=container", "--max_num_workers=4"} <= set(a), a
        name = next(x.split("=", 1)[1] for x in a if x.startswith("--job_name="))
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and stage.value in name, name
        one_process = "--experiments=no_use_multiple_sdk_containers" in a
        assert one_process == (stage in GENERATION_STAGES), (stage, a)  # one engine per GPU
        assert ("--machine_type=n2-standard-8" in a) == (stage not in GENERATION_STAGES), (stage, a)
    assert len({next(x for x in a if x.startswith("--job_name=")) for a in args.values()}) == len(args)
    # Nothing is submitted while the run folder cannot live on Cloud Storage: the refusal says why.
    with pytest.raises(BadRunInput, match="run folder .* this machine's disk"):
        stage_runner(cfg, Stage.READ, engine=False, cpu_workers=2)


def test_dataflow_settings_that_cannot_work_are_named(tmp_path):
    from plumline.pipeline.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        _config(tmp_path, "beam.dataflow.temp_location=/tmp/local", "beam.dataflow.project=null",
                "beam.sampling_accelerator=nvidia-l4")
    text = str(exc.value)
    assert "beam.dataflow.temp_location: '/tmp/local' is not a gs:// path" in text
    assert "beam.dataflow.project: not set" in text and "beam.sampling_accelerator: 'nvidia-l4'" in text


def test_dataflow_runner_builds_every_job_without_submitting(tmp_path):
    """Beam's own DataflowRunner, ``--dry_run``: the whole job request is built, nothing is sent."""
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient",
                        reason="the dataflow extra (apache-beam[gcp]) is not installed")
    cfg = _config(tmp_path)
    layout = _round_with_inputs(tmp_path, cfg)
    for spec in BUILT:
        p, options = _build(cfg, layout, spec, ("--no_auth",))
        job = DataflowRunner().run_pipeline(p, options).job  # the request create_job would send
        assert job.proto.name.startswith("plumline-df-build-") and spec.name.value in job.proto.name
        assert job.proto.type_.name == "JOB_TYPE_BATCH"
        hinted = _accelerator_steps(job.proto_pipeline)
        assert (ENGINE_STEP.get(spec.name) in hinted) == spec.engine, (spec.name, sorted(hinted))
        assert bool(hinted) == spec.engine, (spec.name, sorted(hinted))


# --- what ships to the workers --------------------------------------------------------------------


def _docker_ignores(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore excludes ``path``: a pattern matches it or a folder above it, from the
    context root (``**/`` at any depth)."""
    parts = path.split("/")
    for pattern in patterns:
        for i in range(1, len(parts) + 1):
            if fnmatch("/".join(parts[:i]), pattern) or (
                    pattern.startswith("**/") and fnmatch(parts[i - 1], pattern[3:])):
                return True
    return False


def _source_files() -> list[str]:
    """The files docker/Dockerfile's wheel stage gets: the working tree (tracked, and untracked files git
    does not ignore) minus docker/Dockerfile.dockerignore."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    lines = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]
    return [f for f in listed if (ROOT / f).is_file() and not _docker_ignores(f, patterns)]


def test_the_wheel_holds_every_package_and_its_data(tmp_path):
    """The wheel the worker image installs, built from what the image's build context holds."""
    src = tmp_path / "src"
    for f in _source_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f, follow_symlinks=False)  # as docker COPY: a link stays a link
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "--wheel-dir", str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("plumline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in packages:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    for required in ("plumline/pipeline/runners.py", "plumline/pipeline/configs/dataflow.yaml",
                     "plumline/pipeline/configs/demo.yaml", "plumline/sandbox/_server.py"):
        assert required in names, required
    assert any(n.startswith("plumline/pipeline/assets/") and n.endswith(".jsonl") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "pipeline/", "sandbox/")) for n in names)


def test_the_worker_image_recipe_matches_the_project():
    """docker/Dockerfile: Beam's SDK image at the version pyproject pins (the launcher's), the sandbox's
    Debian packages, plumline from its wheel with the gpu extra (vLLM's CUDA build)."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    beam_pin = next(d for d in project["dependencies"] if d.startswith("apache-beam"))
    assert re.search(r"ARG BEAM_VERSION=(\S+)", text).group(1) == beam_pin.split("==")[1] == beam.__version__
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
    assert re.search(r"ARG PYTHON_VERSION=3\.(\d+)", text).group(1) == str(sys.version_info.minor)
    apt = re.search(r"apt-get install[^\n]*", text).group(0).split()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    for package in ("bubblewrap", "libseccomp2", "python3"):  # what scripts/setup.sh installs for the sandbox
        assert f"need_apt+=({package})" in setup and package in apt, package
    assert 'plumline-*.whl)[gpu]"' in text and "pip wheel" in text and "--no-deps" in text
    assert "vllm==" in " ".join(project["optional-dependencies"]["gpu"])
    assert "ENTRYPOINT" not in text.replace("# ENTRYPOINT", "")  # Beam's boot stays the entrypoint
