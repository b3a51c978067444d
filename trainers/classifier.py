"""The parts of a classifier trainer on a causal LM backbone, for the critic's sequence classifier
(``critic.py``) and any other (a token classifier passes ``task_type="TOKEN_CLS"``): the config
knobs, the text a row becomes, tokenizing it, the split into train and eval rows, class weights and
the weighted loss, ``transformers.TrainingArguments`` with the device-aware precision of the TRL
trainers, and scoring in batches.

These trainers use transformers' ``Trainer`` (not TRL) inside the shared loop of ``run.py``: a method
supplies a factory that loads the model with a fresh head, tokenizes the checked rows and returns
the Trainer (see ``critic.py``). Heavy imports (torch, transformers, peft) happen inside functions,
so importing a config class stays cheap.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from .config import BaseTrainingConfig, LoraSettings, TrainingConfigError, transformers_warmup
from .data import TrainingDataError
from .model import peft_config

logger = logging.getLogger(__name__)


class ClassifierTrainingConfig(BaseTrainingConfig):
    """Knobs every classifier trainer shares: those of every plumline trainer (optimizer, batch,
    device, LoRA, save) with classifier defaults, plus the eval split. The device rule is the TRL
    trainers' (``bf16``, ``use_cpu`` and ``gradient_checkpointing`` decided from the hardware when
    None), so one config runs on a laptop CPU and on a GPU worker. Weights are trained in float32;
    ``bf16`` is mixed precision. ``extra_args`` goes to ``transformers.TrainingArguments``."""

    # Not fields here: the DPO/KTO pull towards a reference model, and TRL's tokenizing processes.
    beta: ClassVar[None] = None
    dataset_num_proc: ClassVar[None] = None

    learning_rate: float = Field(2e-5, gt=0.0, description="Peak AdamW learning rate (the new head starts "
                                 "from random weights, so higher than the policy trainers' 1e-6).")
    per_device_train_batch_size: int = Field(8, ge=1, description="Rows per device per forward pass.")
    per_device_eval_batch_size: int = Field(16, ge=1, description="Rows per forward pass when evaluating "
                                            "on the eval split.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    max_length: int = Field(1024, ge=8, description="Tokens per row (prompt + program). A longer row loses "
                            "the start of its prompt first: the end of the program always stays.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the rows held out for "
                                 "evaluation after training (accuracy overall and per class in the "
                                 "training report); 0: no eval split.")
    eval_by_problem: bool = Field(True, description="Hold out whole problems (rows grouped by problem_id), "
                                  "so eval programs answer prompts the classifier never trained on; false: "
                                  "hold out single rows.")
    lora: LoraSettings | None = Field(None, description="Train LoRA adapters (the new head is trained "
                                      "fully) instead of all weights (needs peft); None: full fine-tuning.")
    save: bool = Field(True, description="Save the trained model and tokenizer into the output folder. "
                       "False: a dry run that writes only the training report (the folder is marked as "
                       "holding no weights).")
    extra_args: dict[str, Any] = Field(
        default_factory=dict, description="Passed unchanged to transformers.TrainingArguments for anything "
        "not covered above, e.g. {'max_grad_norm': 0.5}. Overrides the fields above.")

    def trl_config(self, output_dir: Path, seed: int = 0) -> Any:
        """The base class's name for a method's trainer arguments: here ``training_args``."""
        return self.training_args(output_dir, seed)

    def training_args(self, output_dir: Path, seed: int) -> Any:
        """``transformers.TrainingArguments``: these knobs, the device rule, ``extra_args`` on top.
        Training saves once, at the end, itself: no checkpoints, trackers or progress bars."""
        import dataclasses

        from transformers import TrainingArguments

        kw: dict[str, Any] = {
            "output_dir": str(output_dir), "learning_rate": self.learning_rate,
            "num_train_epochs": self.epochs, "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "per_device_eval_batch_size": self.per_device_eval_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "warmup_steps": transformers_warmup(self.warmup_steps, self.max_steps),
            "lr_scheduler_type": self.lr_scheduler_type, "weight_decay": self.weight_decay,
            "seed": seed, "data_seed": seed, "logging_steps": self.logging_steps,
            "save_strategy": "no", "eval_strategy": "no", "report_to": "none", "disable_tqdm": True,
            # the rows are tokenized here; a PEFT-wrapped model's forward hides its argument names
            "remove_unused_columns": False,
            **self.resolved_device(),
        }
        for reserved in ("output_dir", "seed", "data_seed"):
            if reserved in self.extra_args:
                raise TrainingConfigError(f"extra_args: {reserved} is set by plumline (the train command's "
                                          f"--out and --seed)")
        unknown = sorted(set(self.extra_args) - {f.name for f in dataclasses.fields(TrainingArguments)})
        if unknown:
            raise TrainingConfigError(f"extra_args: {unknown} are not fields of "
                                      "transformers.TrainingArguments")
        try:
            return TrainingArguments(**{**kw, **self.extra_args})
        except (TypeError, ValueError) as e:
            raise TrainingConfigError(f"transformers.TrainingArguments rejected the config: {e}") from None


# --------------------------------------------------------------------------- rows -> text -> tokens


def classifier_inputs(data_files: Any, ref_model: Any, what: str) -> tuple[list[Any], str]:
    """The data files as a list and their resolved paths as one label for error messages; a classifier
    (the critic, the PRM) has no reference model, so ``ref_model`` must be None."""
    if ref_model is not None:
        raise TrainingConfigError(f"--ref-model does not apply to the {what} (a classifier has no reference "
                                  f"model)")
    files = [data_files] if isinstance(data_files, (str, Path)) else list(data_files)
    return files, ", ".join(str(Path(f).expanduser().resolve()) for f in files)


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """A row's prompt as text: a string unchanged (the exact text the policy saw), role/content
    messages rendered with the tokenizer's chat template and the assistant turn opened."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingDataError("the prompts are chat messages but the tokenizer has no chat template")
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def join_prompt_code(prompt: str, code: str) -> str:
    """What a classifier reads for one program: the prompt, then the program on a new line."""
    if prompt and not prompt.endswith("\n"):
        prompt += "\n"
    return prompt + code


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text (the tokenizer's special tokens included), at most ``max_length``; a longer
    text loses its beginning (the prompt's start), never its end (the program's last lines)."""
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    finally:
        tokenizer.truncation_side = side


def ensure_pad_token(tokenizer: Any, model: Any) -> None:
    """A pad token on both sides: the EOS token when the tokenizer has none (the usual stand-in). The
    model needs ``pad_token_id`` to find each row's last real token in a padded batch. Padding goes on
    the right, so the real tokens keep the positions they have unpadded."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        raise TrainingConfigError("the tokenizer has neither a pad nor an EOS token")
    model.config.pad_token_id = tokenizer.pad_token_id


# --------------------------------------------------------------------------- labels, split, weights


def split_eval(n_rows: int, fraction: float, seed: int, groups: Sequence[str] | None = None
               ) -> tuple[list[int], list[int], str]:
    """(train indices, eval indices, how) for a seeded hold-out of about ``fraction`` of ``n_rows``.

    With ``groups`` (e.g. problem ids), whole groups are held out, shuffled with ``seed``, until the
    share is reached; ``how`` is "group". With one group only (or none given) single rows are held out
    (``how`` "row"). At least one row stays for training; ``fraction`` 0 or a single row: no eval rows."""
    if fraction <= 0 or n_rows < 2:
        return list(range(n_rows)), [], "none"
    want = max(1, round(fraction * n_rows))
    rng = random.Random(seed)
    if groups is not None and len(set(groups)) >= 2:
        keys = sorted(set(groups))
        rng.shuffle(keys)
        held: set[str] = set()
        count = 0
        for k in keys[:-1]:  # the last group always trains
            if count >= want:
                break
            held.add(k)
            count += sum(1 for g in groups if g == k)
        ev = [i for i in range(n_rows) if groups[i] in held]
        return [i for i in range(n_rows) if groups[i] not in held], ev, "group"
    order = list(range(n_rows))
    rng.shuffle(order)
    ev = sorted(order[:min(want, n_rows - 1)])
    held_rows = set(ev)
    return [i for i in range(n_rows) if i not in held_rows], ev, "row"


def class_counts(labels: Sequence[int], n_classes: int) -> list[int]:
    counts = [0] * n_classes
    for y in labels:
        counts[y] += 1
    return counts


def balanced_weights(counts: Sequence[int]) -> list[float]:
    """Class weights n / (classes present x count), sklearn's "balanced": a rare class weighs more, and
    the mean weight over the rows is 1. A class without rows gets 1.0 (it never meets the loss)."""
    present = [c for c in counts if c > 0]
    total = sum(present)
    return [round(total / (len(present) * c), 6) if c > 0 else 1.0 for c in counts]


def check_class_weights(value: Any, n_classes: int, which: str) -> Any:
    """A ``class_weights`` setting: none, balanced, or ``n_classes`` non-negative numbers, not all zero
    (``which`` names them in the error, e.g. "(classes 0-3)")."""
    if isinstance(value, list) and (len(value) != n_classes or any(w < 0 for w in value)
                                    or not any(w > 0 for w in value)):
        raise ValueError(f"give {n_classes} non-negative weights {which}, not all zero; got {value}")
    return value


def resolve_class_weights(setting: Any, counts: list[int]) -> list[float] | None:
    """The loss weights a ``class_weights`` setting means for the training rows' class ``counts``:
    None (all 1), ``balanced_weights(counts)``, or the numbers given."""
    if setting == "none":
        return None
    if setting == "balanced":
        return balanced_weights(counts)
    return [float(w) for w in setting]


def weighted_loss(weights: Sequence[float] | None) -> Callable[..., Any]:
    """A ``compute_loss_func`` for transformers' Trainer: cross-entropy over the logits' last axis with
    optional class weights; labels of -100 are ignored. It sums and divides by the label count of the
    whole accumulated batch (Trainer's ``num_items_in_batch``), so gradient accumulation is exact."""
    import torch
    import torch.nn.functional as F

    w = torch.tensor(list(weights), dtype=torch.float32) if weights is not None else None

    def loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float().reshape(-1, logits.shape[-1])
        labels = labels.reshape(-1).to(logits.device)
        weight = w.to(logits.device) if w is not None else None
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=-100, reduction="sum")
        n = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
        return loss / torch.as_tensor(n, device=loss.device).clamp(min=1)

    return loss_func


def accuracy_report(labels: Sequence[int], predictions: Sequence[int],
                    names: Sequence[str]) -> dict[str, Any]:
    """Accuracy overall, per class (the share of a class's rows predicted as that class; None for a
    class without rows), their mean over present classes (balanced accuracy), the row count per class
    and the confusion matrix (``confusion[true][predicted]``)."""
    n = len(names)
    confusion = [[0] * n for _ in range(n)]
    for y, p in zip(labels, predictions):
        confusion[y][p] += 1
    counts = [sum(row) for row in confusion]
    per_class = {names[c]: (round(confusion[c][c] / counts[c], 6) if counts[c] else None) for c in range(n)}
    present = [v for v in per_class.values() if v is not None]
    correct = sum(confusion[c][c] for c in range(n))
    return {"rows": len(labels), "accuracy": round(correct / len(labels), 6) if labels else None,
            "balanced_accuracy": round(sum(present) / len(present), 6) if present else None,
            "per_class_accuracy": per_class, "rows_per_class": dict(zip(names, counts)),
            "confusion": confusion}


# --------------------------------------------------------------------------- model


def load_classifier(auto_class: Any, model: str, tokenizer: Any, labels: Sequence[str], seed: int,
                    lora: LoraSettings | None = None, task_type: str = "SEQ_CLS") -> Any:
    """The backbone of ``model`` (a causal LM folder or hub id) with a fresh ``len(labels)``-way head,
    in float32 (mixed precision is the Trainer's ``bf16``), seeded so the head starts the same for one
    seed. ``auto_class``: e.g. ``AutoModelForSequenceClassification``."""
    import torch
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    set_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point here, not news
    try:
        net = auto_class.from_pretrained(
            model, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    ensure_pad_token(tokenizer, net)
    net.config.use_cache = False  # a classifier's forward needs no KV cache
    peft_cfg = peft_config(lora, task_type)
    if peft_cfg is not None:
        from peft import get_peft_model

        net = get_peft_model(net, peft_cfg)
    return net


def inference_setup(device: str | None = None) -> tuple[str, Any]:
    """(device, torch dtype) for scoring: CUDA when visible, else CPU; bfloat16 where the hardware has
    it, float16 on a GPU without it, float32 otherwise (``plumline.llm.hardware.choose_dtype``)."""
    import torch
    from plumline.llm.hardware import choose_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    choice = choose_dtype("auto", "cuda" if device.startswith("cuda") else "cpu")
    return device, getattr(torch, choice.dtype)


def class_probabilities(model: Any, tokenizer: Any, ids: Sequence[Sequence[int]], batch_size: int,
                        device: Any = None) -> list[list[float]]:
    """Softmax over a sequence classifier's classes for each token-id list, in batches (longest first,
    so a batch pads little; results in input order), without gradients. Computed in the model's dtype,
    normalized in float32."""
    import torch

    device = device if device is not None else next(model.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[list[float] | None] = [None] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                batch = tokenizer.pad({"input_ids": [list(ids[i]) for i in chunk]}, padding=True,
                                      return_tensors="pt")
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device)).logits
                probs = torch.softmax(logits.float(), dim=-1).cpu().tolist()
                for i, p in zip(chunk, probs):
                    out[i] = p
    finally:
        model.train(was_training)
    return [p for p in out if p is not None]
