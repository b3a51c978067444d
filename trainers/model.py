"""The policy on each side of a training run: resolving and loading the model and tokenizer,
the optional LoRA adapters, and saving the trained weights as a plain Hugging Face folder that
vLLM, transformers and the next round load unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import LoraSettings, TrainingConfigError
from .data import TrainingDataError
from .output import NO_WEIGHTS_MARKER


def resolve_model(model_path: str | Path) -> str:
    """A local folder, or a hub id (``org/name``). A path-looking string that does not exist is an
    error here rather than a network lookup deep inside transformers; so is a folder written by a
    ``save: false`` run (it holds a training report, not a model)."""
    text = str(model_path)
    p = Path(text).expanduser()
    if p.exists():
        if (p / NO_WEIGHTS_MARKER).exists():
            raise FileNotFoundError(f"model folder {p} holds no weights: it was trained with save: false")
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"model folder {p} has no config.json")
        return str(p.resolve())
    windows_path = os.sep != "/" and os.sep in text
    if p.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or windows_path:
        raise FileNotFoundError(f"model folder {text} does not exist")
    return text


def load_tokenizer(model: str, conversational: bool) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        # Padding is masked out; the EOS token is the usual stand-in for models shipped without one.
        tok.pad_token = tok.eos_token
    if conversational and not getattr(tok, "chat_template", None):
        raise TrainingDataError(f"the data is conversational but the tokenizer of {model} has no chat "
                                "template; export the standard (string) format or use a chat model")
    return tok


def load_reference(ref_model: str | Path | None) -> Any:
    """The frozen reference model of DPO/KTO when it is not the policy itself (e.g. the run's initial
    policy while round r trains round r-1's model); None: TRL uses the policy's own starting point."""
    if ref_model is None:
        return None
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_model(ref_model), dtype="auto")


def peft_config(lora: LoraSettings | None, task_type: str = "CAUSAL_LM") -> Any:
    """peft's ``LoraConfig`` for ``lora`` (None: full fine-tuning). ``task_type``: "CAUSAL_LM" for the
    policy trainers; "SEQ_CLS"/"TOKEN_CLS" for the classifiers, whose new head is trained in full."""
    if lora is None:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise TrainingConfigError("lora is set but the 'peft' package is not installed") from None
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type=task_type)


def save_trained(trainer: Any, tokenizer: Any, stage: Path, lora: LoraSettings | None) -> None:
    """Save weights + tokenizer as a plain Hugging Face folder (safetensors), the next policy."""
    model = trainer.model
    model = getattr(trainer.accelerator, "unwrap_model", lambda m: m)(model)
    if lora is not None and lora.merge_on_save and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    # TRL turns the KV cache off for training; the saved policy is for generation, so turn it back on
    # (transformers' generate would otherwise recompute every step).
    if getattr(model.config, "use_cache", None) is False:
        model.config.use_cache = True
    model.save_pretrained(stage, safe_serialization=True)
    tokenizer.save_pretrained(stage)
    # safetensors may write 0600 files; the policy folder is read by other users/containers
    # (a vLLM server, a Dataflow worker), so make it as readable as any file we create.
    umask = os.umask(0)
    os.umask(umask)
    for f in stage.rglob("*"):
        if f.is_file():
            f.chmod(0o666 & ~umask)
