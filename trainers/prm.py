"""The process reward model (arXiv 2410.17621) on plumline's ``prm`` export: one config, one train
function, and the scoring API the reranker and the dense rewards use.

Data: TRL's stepwise-supervision format, ``prompt`` (str), ``completions`` (the program's steps:
lines, blank/comment lines joined to a neighbour, see ``plumline.data_schemas.steps``) and
``labels`` (one bool per step: True while a passing program can still be completed from the prefix
that ends with the step). Other columns (first_bad_step, k, ids) are provenance and are ignored.

Model: ``AutoModelForTokenClassification`` (2 labels, 0 ``bad`` / 1 ``good``) on the causal LM
backbone, trained with transformers' ``Trainer`` (TRL 1.14 removed its PRMTrainer; the tokenization
is the one it used):

    [BOS] prompt | step 1 + SEP | step 2 + SEP | ...        SEP = ``step_separator`` ("\\n")

Each step is tokenized on its own and followed by the separator's tokens; the step's label sits on
its last token, which is the separator that ends the line, and every other token (the prompt too)
is -100. So the model reads a line's score once the line is complete, exactly where a policy emits
the newline. BOS is added unless the prompt already starts with it (a chat-rendered prompt often
does). ``max_length`` truncation drops whole trailing steps, so a label is never cut off from its
step; a row whose prompt plus first step do not fit is dropped.

Run as its own process::

    plumline train prm --data round-000/prm.parquet --model POLICY --out round-000/prm --seed 0

The saved folder records its separator in ``config.json`` (``prm_step_separator``) so that
``PrmScorer``/``prm_step_scores`` split and join programs exactly as training did. What every
classifier trainer shares (knobs, eval split, class weights, LoRA, precision) is the critic's too and
lives in ``classifier.py``; most steps are good (all steps before a program's first bad line),
``class_weights: balanced`` weighs the bad ones up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plumline.data_schemas.steps import split_steps
from pydantic import Field, field_validator

from .classifier import (
    ClassifierTrainingConfig,
    accuracy_report,
    check_class_weights,
    class_counts,
    classifier_inputs,
    inference_setup,
    load_classifier,
    resolve_class_weights,
    split_eval,
    weighted_loss,
)
from .data import TrainingDataError
from .model import resolve_model
from .output import TrainingReport
from .run import run_training

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of every token that is not a step's last token
BAD, GOOD = 0, 1
PRM_CLASSES = ("bad", "good")  # label ids 0 and 1
SEPARATOR_ATTR = "prm_step_separator"  # written into the trained PRM's config.json
PRM_COLUMNS = ("prompt", "completions", "labels")  # TRL's stepwise-supervision columns
GROUP_COLUMN = "problem_id"  # eval_by_problem holds out whole problems


class PrmTrainingConfig(ClassifierTrainingConfig):
    """A process reward model: per-step good/bad token classification on a causal LM backbone.

    The knobs of every classifier trainer (``classifier.py``: optimizer, batch, device, LoRA, save,
    eval split; no ``beta``: a PRM has no reference model) plus the step layout and class weights.
    """

    max_length: int = Field(
        1024, ge=8, description="Cap on prompt + steps in tokens: whole trailing steps are dropped (a label "
        "is never cut off from its step); a row whose prompt and first step do not fit is dropped.")
    step_separator: str = Field(
        "\n", description="Text appended to every step (TRL's PRMTrainer step_separator); the step's "
        "label sits on its last token. Saved with the model so scoring joins steps the same way.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Loss weight of bad and good steps: none (both 1), balanced (steps / (2 x steps "
        "of the class), counted on the training rows: the rarer label weighs more), or two numbers "
        "[bad, good].")

    @field_validator("class_weights")
    @classmethod
    def _two_weights(cls, v: Any) -> Any:
        return check_class_weights(v, len(PRM_CLASSES), "[bad, good]")


# --------------------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class EncodedSteps:
    """One row as the model sees it. ``step_ends[i]`` is the index in ``input_ids`` of step i's
    last token (its separator); ``labels`` is -100 except there. Steps that did not fit
    ``max_length`` are left out (``dropped_steps``), always from the end."""

    input_ids: list[int]
    labels: list[int]
    step_ends: list[int]
    dropped_steps: int


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def encode_steps(tokenizer: Any, prompt: str, steps: Sequence[str], labels: Sequence[bool] | None = None,
                 *, step_separator: str = "\n", max_length: int | None = None) -> EncodedSteps:
    """Tokenize ``prompt`` and ``steps`` for the PRM (see the module docstring for the layout).
    ``labels`` None (scoring): every label is -100 and only ``step_ends`` matters."""
    prompt_ids = _ids(tokenizer, [prompt])[0]
    bos = tokenizer.bos_token_id
    if bos is not None and (not prompt_ids or prompt_ids[0] != bos):
        prompt_ids = [bos, *prompt_ids]
    sep_ids = _ids(tokenizer, [step_separator])[0] if step_separator else []
    input_ids = list(prompt_ids)
    out_labels = [IGNORE_INDEX] * len(input_ids)
    ends: list[int] = []
    for i, ids in enumerate(_ids(tokenizer, list(steps))):
        ids = ids + sep_ids
        if not ids:
            raise ValueError(f"step {i} has no tokens (an empty step and an empty separator)")
        if max_length is not None and len(input_ids) + len(ids) > max_length:
            break
        input_ids.extend(ids)
        label = IGNORE_INDEX if labels is None else int(bool(labels[i]))
        out_labels.extend([IGNORE_INDEX] * (len(ids) - 1) + [label])
        ends.append(len(input_ids) - 1)
    return EncodedSteps(input_ids, out_labels, ends, len(steps) - len(ends))


def encode_rows(tokenizer: Any, rows: Sequence[tuple[str, Sequence[str], Sequence[bool]]],
                cfg: PrmTrainingConfig) -> tuple[list[EncodedSteps], dict[str, int]]:
    """``encode_steps`` over (prompt, steps, labels) rows; rows left with no step are dropped and
    counted with the steps ``max_length`` cut."""
    kept: list[EncodedSteps] = []
    stats = {"rows_dropped_by_max_length": 0, "rows_truncated": 0, "steps_dropped_by_max_length": 0}
    for prompt, steps, labels in rows:
        enc = encode_steps(tokenizer, prompt, steps, labels, step_separator=cfg.step_separator,
                           max_length=cfg.max_length)
        stats["steps_dropped_by_max_length"] += enc.dropped_steps
        if not enc.step_ends:
            stats["rows_dropped_by_max_length"] += 1
            continue
        stats["rows_truncated"] += int(enc.dropped_steps > 0)
        kept.append(enc)
    return kept, stats


def as_dataset(encoded: Sequence[EncodedSteps]) -> Any:
    """The Trainer's rows: input_ids, attention_mask and labels (ints, -100 off the step ends)."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in encoded],
                                       "attention_mask": [[1] * len(e.input_ids) for e in encoded],
                                       "labels": [e.labels for e in encoded]})


# --------------------------------------------------------------------------- data checks


def check_prm_rows(dataset: Any, label: str) -> None:
    """Every row: a string prompt, a non-empty list of non-blank steps, one bool label per step.
    A bad row raises ``TrainingDataError`` naming the file, the row (and its sample_id) and why."""
    missing = [c for c in PRM_COLUMNS if c not in dataset.column_names]
    if missing:
        raise TrainingDataError(f"{label}: missing column(s) {missing}; found {dataset.column_names} "
                                "(a PRM trains on prm.parquet: prompt, completions, labels)")
    ids = dataset["sample_id"] if "sample_id" in dataset.column_names else None
    for i, (prompt, steps, labels) in enumerate(zip(*(dataset[c] for c in PRM_COLUMNS), strict=True)):
        where = f"{label}: row {i}" + (f" (sample_id {ids[i]})" if ids is not None and ids[i] else "")
        if not isinstance(prompt, str):
            kind = "a list of messages" if isinstance(prompt, list) else type(prompt).__name__
            raise TrainingDataError(f"{where}: prompt must be a string (the standard format), got {kind}")
        if not isinstance(steps, list) or not steps:
            raise TrainingDataError(f"{where}: completions must be a non-empty list of steps, got "
                                    f"{'an empty list' if isinstance(steps, list) else type(steps).__name__}")
        for j, step in enumerate(steps):
            if not isinstance(step, str) or not step.strip():
                raise TrainingDataError(f"{where}: step {j} of completions is "
                                        f"{'empty' if isinstance(step, str) else type(step).__name__}")
        if not isinstance(labels, list) or len(labels) != len(steps):
            n = len(labels) if isinstance(labels, list) else type(labels).__name__
            raise TrainingDataError(f"{where}: labels has {n} values but completions has {len(steps)} steps "
                                    "(one bool per step)")
        for j, value in enumerate(labels):
            if not isinstance(value, bool):
                raise TrainingDataError(f"{where}: label {j} must be a bool, got {type(value).__name__}")


# --------------------------------------------------------------------------- training


def train_prm(data_files: list[str | Path], model_path: str | Path, output_dir: Path,
              cfg: PrmTrainingConfig | None = None, *, seed: int = 0, overwrite: bool = False,
              ref_model: str | Path | None = None) -> TrainingReport:
    """Train a PRM from ``model_path`` (a causal LM) on the ``prm`` Parquet ``data_files``; save it,
    its tokenizer and ``training_report.json`` to ``output_dir`` (atomically).

    ``seed`` drives the head's init, the eval split, data order and dropout. The report's ``extra``
    holds the step counts per label, the class weights, what ``max_length`` dropped and, with
    ``cfg.eval_fraction`` > 0, ``eval``: step-level accuracy (overall, per label, balanced, confusion)
    of the trained model on the held-out rows. Raises ``NoTrainingData`` for empty data,
    ``TrainingDataError`` for a malformed row (naming it), ``TrainingConfigError`` for a bad config or
    a ``ref_model`` (a PRM has none), ``FileExistsError`` when ``output_dir`` is non-empty and
    ``overwrite`` is False.
    """
    files, label = classifier_inputs(data_files, ref_model, "PRM")
    cfg = cfg or PrmTrainingConfig()
    info: dict[str, Any] = {"classes": list(PRM_CLASSES)}

    def factory(model: str, tokenizer: Any, dataset: Any, stage: Path, peft_cfg: Any) -> Any:
        from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer

        del peft_cfg  # the shared loop's adapters are for a causal LM; the classifier's are built below
        check_prm_rows(dataset, label)
        rows = list(zip(*(dataset[c] for c in PRM_COLUMNS), strict=True))
        by_problem = cfg.eval_by_problem and GROUP_COLUMN in dataset.column_names
        groups = dataset[GROUP_COLUMN] if by_problem else None
        train_idx, eval_idx, how = split_eval(len(rows), cfg.eval_fraction, seed, groups)
        net = load_classifier(AutoModelForTokenClassification, model, tokenizer, PRM_CLASSES, seed, cfg.lora,
                              "TOKEN_CLS")
        setattr(net.config, SEPARATOR_ATTR, cfg.step_separator)
        if cfg.lora is not None and cfg.resolved_device()["gradient_checkpointing"]:
            net.enable_input_require_grads()  # checkpointed blocks need a grad path past frozen embeddings
        train_enc, stats = encode_rows(tokenizer, [rows[i] for i in train_idx], cfg)
        eval_enc, eval_stats = encode_rows(tokenizer, [rows[i] for i in eval_idx], cfg)
        counts = class_counts([lab for e in train_enc for lab in e.labels if lab != IGNORE_INDEX],
                              len(PRM_CLASSES))
        weights = resolve_class_weights(cfg.class_weights, counts)
        info.update(stats, train_steps_per_class=dict(zip(PRM_CLASSES, counts)), class_weights=weights,
                    eval_split=how, eval_rows=len(eval_enc))
        logger.info("prm: %d training rows, steps per label %s, %d eval rows (%s split), class weights %s",
                    len(train_enc), info["train_steps_per_class"], len(eval_enc), how, weights)
        if stats["rows_dropped_by_max_length"] or stats["rows_truncated"]:
            logger.warning("prm: max_length %d dropped %d rows and cut %d steps from %d more",
                           cfg.max_length, stats["rows_dropped_by_max_length"],
                           stats["steps_dropped_by_max_length"], stats["rows_truncated"])

        class PrmTrainer(Trainer):
            def train(self, *args: Any, **kwargs: Any) -> Any:
                result = super().train(*args, **kwargs)
                if eval_enc:  # held-out rows, scored by the trained model before it is saved
                    probs = step_probabilities(self.model, tokenizer, eval_enc,
                                               cfg.per_device_eval_batch_size, self.args.device)
                    gold = [lab for e in eval_enc for lab in e.labels if lab != IGNORE_INDEX]
                    preds = [int(p > 0.5) for ps in probs for p in ps]
                    info["eval"] = {**accuracy_report(gold, preds, PRM_CLASSES), "split": how,
                                    "steps_dropped_by_max_length": eval_stats["steps_dropped_by_max_length"]}
                    logger.info("prm eval: step accuracy %s, per label %s", info["eval"]["accuracy"],
                                info["eval"]["per_class_accuracy"])
                return result

        return PrmTrainer(model=net, args=cfg.training_args(stage, seed),
                          train_dataset=as_dataset(train_enc), processing_class=tokenizer,
                          data_collator=DataCollatorForTokenClassification(tokenizer),
                          compute_loss_func=weighted_loss(weights))

    return run_training("prm", factory, cfg, files, model_path, Path(output_dir), {"prompt": "text"},
                        seed=seed, overwrite=overwrite, extra_report=info)


# --------------------------------------------------------------------------- scoring

Aggregate = Literal["min", "product"]


def aggregate(step_scores: Sequence[float], how: Aggregate = "min") -> float:
    """One score per program from its step scores: ``min`` (the weakest line) or ``product`` (the
    probability that every line is good, if independent). NaN scores (steps past ``max_length``)
    are skipped; a program with no scored step scores 0.0, the lowest a probability can be."""
    values = [float(s) for s in step_scores if not math.isnan(s)]
    if how not in ("min", "product"):
        raise ValueError(f"unknown aggregation {how!r}; use 'min' or 'product'")
    if not values:
        return 0.0
    return min(values) if how == "min" else math.prod(values)


def step_probabilities(model: Any, tokenizer: Any, encoded: Sequence[EncodedSteps], batch_size: int,
                       device: Any = None) -> list[list[float]]:
    """P(good) at each kept step end of each encoded row, batched (longest first, right-padded),
    without gradients; results in input order. Computed in the model's dtype, normalized in float32."""
    import torch

    device = device if device is not None else next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
    out: list[list[float]] = [[] for _ in encoded]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), max(1, batch_size)):
                chunk = order[start:start + max(1, batch_size)]
                width = max(len(encoded[i].input_ids) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    n = len(encoded[i].input_ids)
                    ids[row, :n] = torch.tensor(encoded[i].input_ids)
                    mask[row, :n] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                good = torch.softmax(logits.float(), dim=-1)[..., GOOD].cpu()
                for row, i in enumerate(chunk):
                    out[i] = good[row, encoded[i].step_ends].tolist()
    finally:
        model.train(was_training)
    return out


class PrmScorer:
    """A trained PRM loaded once: ``step_scores`` gives P(good) at the end of every step.

    ``device``: "cuda", "cpu", ...; None or "auto": CUDA when visible. ``dtype``: "auto" (bfloat16
    where the hardware has it, float16 on a GPU without it, float32 otherwise) or a dtype name.
    """

    def __init__(self, model_dir: str | Path, *, device: str | None = None, dtype: str = "auto"):
        import torch
        from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

        from .classifier import ensure_pad_token

        path = resolve_model(model_dir)
        config = AutoConfig.from_pretrained(path)
        if getattr(config, SEPARATOR_ATTR, None) is None or getattr(config, "num_labels", 0) != 2:
            raise ValueError(f"{path} is not a PRM trained by `plumline train prm` (its config.json has no "
                             f"{SEPARATOR_ATTR})")
        self.path = path
        self.step_separator: str = getattr(config, SEPARATOR_ATTR)
        from plumline.llm.hardware import normalize_dtype

        self.device, torch_dtype = inference_setup(None if device == "auto" else device)
        if normalize_dtype(dtype) != "auto":
            torch_dtype = getattr(torch, normalize_dtype(dtype))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForTokenClassification.from_pretrained(path, dtype=torch_dtype)
        ensure_pad_token(self.tokenizer, self.model)
        self.model.to(self.device).eval()

    def step_scores(self, prompts: Sequence[str], programs: Sequence[str | Sequence[str]], *,
                    batch_size: int = 8, max_length: int | None = None) -> list[list[float]]:
        """P(good) at each step's last token, one list per program, as long as its steps.

        A program is its code (split with ``split_steps``, as the labeller does) or its list of
        steps. ``max_length`` None: every step is scored; else steps past it get NaN.
        """
        if len(prompts) != len(programs):
            raise ValueError(f"{len(prompts)} prompts but {len(programs)} programs")
        steps = [split_steps(p) if isinstance(p, str) else list(p) for p in programs]
        todo = [i for i, s in enumerate(steps) if s]
        encoded = [encode_steps(self.tokenizer, prompts[i], steps[i], step_separator=self.step_separator,
                                max_length=max_length) for i in todo]
        probs = step_probabilities(self.model, self.tokenizer, encoded, batch_size, self.device)
        out: list[list[float]] = [[math.nan] * len(s) for s in steps]
        for i, p in zip(todo, probs, strict=True):
            out[i][:len(p)] = p
        return out


def prm_step_scores(model_dir: str | Path, prompts: Sequence[str], programs: Sequence[str | Sequence[str]],
                    *, batch_size: int = 8, device: str | None = None, dtype: str = "auto",
                    max_length: int | None = None) -> list[list[float]]:
    """Load the PRM at ``model_dir`` and score every program: one list of P(good) per program, one
    value per step (see ``PrmScorer.step_scores``). Load a ``PrmScorer`` once to score repeatedly.
    Raises ``FileNotFoundError`` for a missing folder, ``ValueError`` for one that is not a PRM."""
    scorer = PrmScorer(model_dir, device=device, dtype=dtype)
    return scorer.step_scores(prompts, programs, batch_size=batch_size, max_length=max_length)
