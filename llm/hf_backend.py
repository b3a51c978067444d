"""transformers ``generate``: the light fallback (no vLLM), CPU or GPU.

Requests are grouped by sampling parameters (``generate`` takes one set per call) and sent
``batch_size`` prompts at a time, left-padded, with ``num_return_sequences=n``.

Seeds: ``generate`` draws from the global torch RNG, one stream for the whole batch, so a chunk is
seeded with a hash of its requests' seeds (and prompts). Results are reproducible for the same batch
composition; the same request in a different batch gets different (equally valid) samples. vLLM seeds
each request separately.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from . import progress
from .assets import model_revision
from .base import GenerationBackend, HFTokenizerMixin, load_tokenizer, truncate_at_stop
from .config import BackendConfig
from .hardware import choose_dtype, warn_once
from .types import Completion, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

def chunk_seed(items: list[tuple[GenerationRequest, Any, int | None]]) -> int | None:
    """One RNG seed for a chunk, from its requests' seeds and prompts; None when no request is seeded."""
    if all(req.seed is None for req, _, _ in items):
        return None
    h = hashlib.sha256()
    for req, _, _ in items:
        h.update(f"{req.seed}\0{req.prompt}\0".encode())
    return int.from_bytes(h.digest()[:8], "little") & ((1 << 63) - 1)


class TransformersBackend(HFTokenizerMixin, GenerationBackend):
    name = "transformers"

    def __init__(self, cfg: BackendConfig):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("BackendConfig.model is empty")
        if cfg.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
        import torch
        from transformers import AutoModelForCausalLM

        self._torch = torch
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # The same rule as vLLM: bfloat16 only where the hardware has it, float32 on other CPUs.
        self.dtype_choice = choose_dtype(cfg.dtype, "cuda" if self.device.type == "cuda" else "cpu")
        if self.dtype_choice.warning:
            warn_once(self.dtype_choice.warning)
        dtype: Any = getattr(torch, self.dtype_choice.dtype)
        self.model_name = cfg.model
        self.revision = model_revision(cfg.model)
        self._setup_tokenizer(load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code), cfg.chat)
        self.model: Any = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code).to(self.device).eval()
        own = getattr(self.model.config, "max_position_embeddings", None)
        self.max_context = cfg.max_model_len or (int(own) if own else None)
        tok = self.tokenizer
        self._eos_ids = self._eos_token_ids()
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else self._eos_ids[0]

    def _eos_token_ids(self) -> list[int]:
        ids: list[int] = []
        for src in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if src is None:
                continue
            for i in (src if isinstance(src, (list, tuple)) else [src]):
                if i not in ids:
                    ids.append(int(i))
        if not ids:
            raise ValueError(f"{self.model_name}: neither the model nor the tokenizer defines an EOS token")
        return ids

    def _generate_batch(self, items: list[tuple[GenerationRequest, Any, int | None]]
                        ) -> list[GenerationResult]:
        groups: dict[tuple, list[int]] = {}
        for pos, (req, _, _) in enumerate(items):
            key = (req.n, req.temperature > 0, req.temperature, req.top_p, req.max_tokens, req.stop)
            groups.setdefault(key, []).append(pos)
        results: list[GenerationResult | None] = [None] * len(items)
        progress.add("completions_total", sum(req.n for req, _, _ in items))
        bs = self.cfg.batch_size
        for positions in groups.values():
            for k in range(0, len(positions), bs):
                chunk = positions[k:k + bs]
                try:
                    outs = self._run_chunk([items[p] for p in chunk])
                except Exception as exc:  # e.g. out of memory: those requests fail, the rest proceed
                    logger.exception("transformers generate failed for %d requests", len(chunk))
                    reason = f"generate failed: {type(exc).__name__}: {exc}"
                    outs = [GenerationResult(items[p][0].request_id, (), reason) for p in chunk]
                for p, out in zip(chunk, outs):
                    results[p] = out
                progress.add("completions", sum(len(o.completions) for o in outs))
                progress.add("tokens", sum(c.completion_tokens for o in outs for c in o.completions))
        return [r for r in results if r is not None]

    def _run_chunk(self, chunk: list[tuple[GenerationRequest, Any, int | None]]) -> list[GenerationResult]:
        torch = self._torch
        req0 = chunk[0][0]
        seqs = [ids for _, ids, _ in chunk]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):  # left padding: every prompt ends where generation starts
            if s:
                input_ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[row, width - len(s):] = 1
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device),
            "max_new_tokens": req0.max_tokens, "pad_token_id": self._pad_id, "eos_token_id": self._eos_ids,
        }
        sampling = req0.temperature > 0
        if sampling:
            kwargs.update(do_sample=True, temperature=float(req0.temperature), top_p=float(req0.top_p),
                          top_k=0, num_return_sequences=req0.n)
        else:  # greedy is deterministic: decode once, repeat it n times (generate refuses n > 1 here)
            kwargs.update(do_sample=False, num_return_sequences=1)
        if req0.stop:
            kwargs.update(stop_strings=list(req0.stop), tokenizer=self.tokenizer)
        seed = chunk_seed(chunk)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**kwargs)
        new = out[:, width:].tolist()
        results = []
        for row, (req, _, n_tok) in enumerate(chunk):
            comps = []
            for j in range(req.n):
                tokens = new[row * req.n + j] if sampling else new[row]
                comps.append(self._completion(tokens, req, n_tok or 0, j))
            results.append(GenerationResult(request_id=req.request_id, completions=tuple(comps), error=None))
        return results

    def _completion(self, tokens: list[int], req: GenerationRequest, prompt_tokens: int,
                    index: int) -> Completion:
        eos = set(self._eos_ids)
        end = next((i for i, t in enumerate(tokens) if t in eos), None)
        if end is not None:
            body, finish, n_gen = tokens[:end], "stop", end + 1
        else:
            while tokens and tokens[-1] == self._pad_id:  # rows finished early by a stop string
                tokens = tokens[:-1]
            body, finish, n_gen = tokens, "length", len(tokens)
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        stop_string = None
        if req.stop:
            full = text
            text, hit = truncate_at_stop(text, req.stop)
            if hit:
                finish = "stop"
                stop_string = next(s for s in req.stop if full.startswith(s, len(text)))
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=n_gen, index=index, stop_string=stop_string)

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        import gc

        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
