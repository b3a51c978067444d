"""CPU/GPU detection from /proc/cpuinfo text and the dtype rule (bf16 only where it is native)."""

from __future__ import annotations

import pytest
from plumline.llm import hardware
from plumline.llm.hardware import (
    CpuInfo,
    GpuInfo,
    choose_dtype,
    normalize_dtype,
    parse_cpuinfo,
)

# Trimmed /proc/cpuinfo of the machines the issue is about (two processors each).
ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2
bugs\t\t: sysret_ss_attrs

processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni \
avx512_fp16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni \
avx512_fp16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE = "processor : 0\nmodel name : Intel(R) Xeon(R) Gold 6148\nflags : sse avx2 fma avx512f avx512bw\n"
NO_GPU = GpuInfo(False)


def test_zen3_has_avx2_and_no_native_bf16():
    cpu = parse_cpuinfo(ZEN3)
    assert cpu.model == "AMD EPYC 7B13 64-Core Processor" and cpu.cores == 2
    assert cpu.relevant_flags == ["avx2", "fma"] and not cpu.native_bf16


def test_sapphire_rapids_has_native_bf16():
    cpu = parse_cpuinfo(SAPPHIRE_RAPIDS, cores=8)
    assert cpu.cores == 8 and cpu.native_bf16
    assert {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"} <= set(cpu.relevant_flags)
    # AVX-512 alone is not bf16
    assert not parse_cpuinfo(SKYLAKE).native_bf16


def test_empty_cpuinfo_still_names_a_cpu():
    cpu = parse_cpuinfo("")
    assert cpu.model and cpu.flags == frozenset() and cpu.cores == 1


@pytest.mark.parametrize("text, want",
                         [(ZEN3, "float32"), (SKYLAKE, "float32"), (SAPPHIRE_RAPIDS, "bfloat16")])
def test_auto_on_cpu_is_bf16_only_with_native_support(text, want):
    choice = choose_dtype("auto", "cpu", cpu=parse_cpuinfo(text), gpu=NO_GPU)
    assert choice.dtype == want and choice.warning is None
    assert parse_cpuinfo(text).model in choice.reason


def test_auto_wants_amx_for_bf16_on_cpu():
    """float32 measured faster than bf16 for vLLM decode and DPO training on an avx512_bf16 CPU without
    AMX; forcing bf16 there is not warned about (the hardware has it, it is just not the faster choice)."""
    avx512_bf16_only = parse_cpuinfo(SAPPHIRE_RAPIDS.replace("amx_bf16", "").replace("amx_tile", ""))
    assert avx512_bf16_only.native_bf16
    choice = choose_dtype("auto", "cpu", cpu=avx512_bf16_only, gpu=NO_GPU)
    assert choice.dtype == "float32" and "no AMX" in choice.reason and choice.warning is None
    assert choose_dtype("auto", "cpu", cpu=parse_cpuinfo(SAPPHIRE_RAPIDS), gpu=NO_GPU).dtype == "bfloat16"
    assert choose_dtype("bfloat16", "cpu", cpu=avx512_bf16_only, gpu=NO_GPU).warning is None


def test_tcmalloc_is_preloaded_for_child_processes(tmp_path):
    assert hardware.find_tcmalloc((str(tmp_path),)) is None
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    assert hardware.find_tcmalloc((str(tmp_path / "missing"), str(tmp_path))) == str(lib)
    assert hardware.with_tcmalloc({"A": "1"}, str(lib)) == {"A": "1", "LD_PRELOAD": str(lib)}
    gomp = {"LD_PRELOAD": "/x/libgomp.so"}
    assert hardware.with_tcmalloc(gomp, str(lib))["LD_PRELOAD"] == f"{lib}:/x/libgomp.so"
    mine = {"LD_PRELOAD": "/opt/libtcmalloc.so.4"}  # the user's own tcmalloc wins
    assert hardware.with_tcmalloc(mine, str(lib)) == mine


def test_forced_bf16_on_a_cpu_without_it_warns():
    choice = choose_dtype("bf16", "cpu", cpu=parse_cpuinfo(ZEN3), gpu=NO_GPU)
    assert choice.dtype == "bfloat16" and "emulated" in choice.warning and "AMD EPYC" in choice.warning
    assert choose_dtype("bfloat16", "cpu", cpu=parse_cpuinfo(SAPPHIRE_RAPIDS)).warning is None
    assert choose_dtype("float16", "cpu", cpu=parse_cpuinfo(SAPPHIRE_RAPIDS)).warning  # no native fp16 GEMM
    assert choose_dtype("float32", "cpu", cpu=parse_cpuinfo(ZEN3)).warning is None


def test_gpu_rule():
    cpu = parse_cpuinfo(ZEN3)
    assert choose_dtype("auto", "cuda", cpu=cpu, gpu=GpuInfo(True, "NVIDIA H200", True)).dtype == "bfloat16"
    assert choose_dtype("auto", "cuda", cpu=cpu, gpu=GpuInfo(True, "Tesla T4", False)).dtype == "float16"
    forced = choose_dtype("float32", "cuda", cpu=cpu, gpu=GpuInfo(True, "Tesla T4", False))
    assert forced.dtype == "float32" and forced.warning is None


def test_dtype_names():
    assert [normalize_dtype(d) for d in ("AUTO", "bf16", "fp32", "half")] == [
        "auto", "bfloat16", "float32", "float16"]
    with pytest.raises(ValueError, match="unknown dtype"):
        normalize_dtype("int4")


def test_warn_once_logs_a_message_once(caplog):
    with caplog.at_level("WARNING"):
        assert hardware.warn_once("test message 1234")
        assert not hardware.warn_once("test message 1234")
    assert [r.message for r in caplog.records].count("test message 1234") == 1


def test_this_machine_and_the_precision_record(monkeypatch):
    cpu = hardware.cpu_info()
    assert cpu.model and cpu.cores >= 1
    summary = hardware.hardware_summary(gpu=NO_GPU)
    assert summary["cpu_model"] == cpu.model and summary["cpu_native_bf16"] == cpu.native_bf16
    monkeypatch.setattr(hardware, "cpu_info", lambda: parse_cpuinfo(ZEN3))
    monkeypatch.setattr(hardware, "gpu_info", lambda: NO_GPU)
    rec = hardware.precision_record("vllm", "auto")
    assert rec["dtype"] == "float32" and rec["device"] == "cpu" and "AMD EPYC" in rec["reason"]
    assert hardware.precision_record("openai", "auto") is None


def test_transformers_backend_follows_the_rule(monkeypatch, tiny_llama):
    import torch
    from plumline.llm import BackendConfig, make_backend

    for text, want in ((ZEN3, torch.float32), (SAPPHIRE_RAPIDS, torch.bfloat16)):
        monkeypatch.setattr(hardware, "cpu_info", lambda text=text: parse_cpuinfo(text))
        b = make_backend(BackendConfig(kind="transformers", model=str(tiny_llama), device="cpu"))
        try:
            assert b.model.dtype == want and b.dtype_choice.dtype == str(want).removeprefix("torch.")
        finally:
            b.close()


def test_training_precision_follows_the_rule(monkeypatch):
    torch = pytest.importorskip("torch")
    from plumline.trainers.config import BaseTrainingConfig

    if torch.cuda.is_available():
        pytest.skip("CPU rule")
    monkeypatch.setattr(hardware, "cpu_info", lambda: parse_cpuinfo(ZEN3))
    assert BaseTrainingConfig().resolved_device()["bf16"] is False
    report = BaseTrainingConfig().device_report()
    assert report["precision"] == "float32" and report["hardware"]["cpu_model"].startswith("AMD EPYC")
    monkeypatch.setattr(hardware, "cpu_info", lambda: parse_cpuinfo(SAPPHIRE_RAPIDS))
    assert BaseTrainingConfig().resolved_device()["bf16"] is True
    assert BaseTrainingConfig(bf16=False).resolved_device()["bf16"] is False


def test_cpuinfo_dataclass_is_hashable():
    assert hash(CpuInfo("x", frozenset({"avx2"}), 2))
