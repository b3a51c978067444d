"""The vLLM worker side of loading a round's trained weights into a running engine (``load_model`` of
``VLLMBackend``). Imported by vLLM inside its worker process through the engine's
``worker_extension_cls`` (``WORKER_EXTENSION``), so the engine can be driven by name through
``LLM.collective_rpc(RELOAD_METHOD, ...)``.

Why more than vLLM's own ``reload_weights``: vLLM 0.32 re-processes after loading only the layers whose
weights the checkpoint holds. On CPU, processing packs a layer's weight into a GEMM handle
(``cpu_linear``: oneDNN or SGL kernels) that keeps its own copy of the matrix. A *tied* LM head (SmolLM2,
Llama 3.2, Qwen2.5 small models) has no weight of its own in the checkpoint: its data is the new
embedding matrix, but its handle still held the old one, so logits came from the old output layer
(measured on a tiny tied Llama: prompt log-probs off by up to 0.5 against a fresh engine on the new
weights). Every layer that kept its weight next to a CPU GEMM handle is packed again from the weight
it holds now; packing is cheap next to a restart (a copy of the matrix).
"""

from __future__ import annotations

from typing import Any

WORKER_EXTENSION = "plumline.llm.vllm_reload.ReloadExtension"  # vLLM resolves dotted names
RELOAD_METHOD = "plumline_reload_weights"


class ReloadExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``): ``self`` is the worker."""

    def plumline_reload_weights(self, path: str) -> int:
        """Load the checkpoint at ``path`` in place, then re-pack every CPU GEMM handle whose layer
        still holds its weight. Returns how many handles were re-packed."""
        self.reload_weights(weights_path=path)  # type: ignore[attr-defined]
        model: Any = self.model_runner.get_model()  # type: ignore[attr-defined]
        repacked = 0
        for module in model.modules():
            weight = getattr(module, "weight", None)
            method = getattr(module, "quant_method", None)
            if (hasattr(module, "cpu_linear") and method is not None and weight is not None
                    and weight.numel() > 0 and not weight.is_meta):
                method.process_weights_after_loading(module)
                repacked += 1
        return repacked
