"""CodeRL's critic (arXiv 2207.01780) on plumline's ``critic`` export: one config, one train function,
one scoring function.

The critic reads a problem's prompt and a program and predicts the program's outcome class: 0 compile
error, 1 runtime error, 2 failed tests, 3 passed (the ``coderl_class`` column, ``Execution.coderl_class``).
It is a sequence classifier on the policy's own causal LM backbone
(``AutoModelForSequenceClassification``, e.g. ``LlamaForSequenceClassification``: a fresh 4-way head on
the last real token), trained with transformers' ``Trainer`` on CPU or GPU. The input is the prompt
followed by the program; a row longer than ``max_length`` loses the start of its prompt, never the end
of its program. Outcome classes are imbalanced (a weak policy mostly fails, a strong one mostly
passes): ``class_weights: balanced`` weighs the rare classes up.

Train as its own process (the online loop does not train the critic)::

    plumline train critic --data round-000/critic.parquet --model POLICY --out critic --seed 0

Use it (reranking, ``plumline eval --rerank``): ``critic_scores(folder, prompts, codes)`` gives each
program's probabilities of the four classes; the probability of class 3 (``PASSED_CLASS``) is how much
the critic "likes" a program. ``CriticScorer`` keeps the model loaded between calls.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .classifier import (
    ClassifierTrainingConfig,
    accuracy_report,
    check_class_weights,
    class_counts,
    class_probabilities,
    classifier_inputs,
    encode,
    inference_setup,
    join_prompt_code,
    load_classifier,
    prompt_text,
    resolve_class_weights,
    split_eval,
    weighted_loss,
)
from .data import TrainingDataError
from .model import resolve_model
from .output import REPORT_NAME, TrainingReport
from .run import run_training

logger = logging.getLogger(__name__)

# The classes by index (CodeRL's outcome classes, ``data_schemas.CODERL_CLASS``).
CRITIC_CLASSES = ("compile_error", "runtime_error", "failed_tests", "passed")
PASSED_CLASS = 3  # the probability of this class is the critic's score for reranking
LABEL_COLUMN = "coderl_class"
# Text columns, checked on every row (as the DPO/KTO columns are); the label is checked by check_labels.
CRITIC_COLUMNS = {"prompt": "text", "code": "text"}
GROUP_COLUMN = "problem_id"  # eval_by_problem holds out whole problems
DEFAULT_MAX_LENGTH = 1024


class CriticTrainingConfig(ClassifierTrainingConfig):
    """The CodeRL critic: program -> outcome class (compile error, runtime error, failed tests, passed)."""

    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Loss weight per outcome class: none (all 1), balanced (rows / (classes x "
        "rows of the class), counted on the training rows: rare classes weigh more), or four numbers "
        "for classes 0-3.")

    @field_validator("class_weights")
    @classmethod
    def _four_weights(cls, v: Any) -> Any:
        return check_class_weights(v, len(CRITIC_CLASSES), "(classes 0-3)")


def check_labels(dataset: Any, label: str) -> list[int]:
    """Every row's ``coderl_class`` as an int in 0-3; a missing column or a bad value is a
    ``TrainingDataError`` naming the file, the row and the value."""
    if LABEL_COLUMN not in dataset.column_names:
        raise TrainingDataError(f"{label}: missing column(s) {[LABEL_COLUMN]}; found {dataset.column_names}")
    out = []
    for i, v in enumerate(dataset[LABEL_COLUMN]):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(CRITIC_CLASSES):
            raise TrainingDataError(f"{label}: row {i}: column {LABEL_COLUMN!r} must be a CodeRL class "
                                    f"0-{len(CRITIC_CLASSES) - 1}, got {v!r}")
        out.append(v)
    return out


def _names(counts: Sequence[int]) -> dict[str, int]:
    return dict(zip(CRITIC_CLASSES, counts))


def train_critic(data_files: list[str | Path], model_path: str | Path, output_dir: Path,
                 cfg: CriticTrainingConfig | None = None, *, seed: int = 0, overwrite: bool = False,
                 ref_model: str | Path | None = None) -> TrainingReport:
    """Train a critic from ``model_path`` (the policy: a causal LM folder or hub id) on the Parquet
    ``data_files`` (critic exports); save it to ``output_dir``.

    ``seed`` drives the head's init, the eval split, data order and dropout. The folder receives the
    classifier, its tokenizer and ``training_report.json`` only when training finished; the report's
    ``extra`` holds the class counts, the class weights used and, with ``eval_fraction``, ``eval``:
    accuracy overall and per class, balanced accuracy and the confusion matrix on the held-out rows.
    Same errors as ``train_dpo``: ``NoTrainingData``, ``TrainingDataError`` (a missing column, a label
    outside 0-3), ``TrainingConfigError``, ``FileExistsError``. ``ref_model`` exists for the shared
    command line and must be None (a critic has no reference model).
    """
    files, label = classifier_inputs(data_files, ref_model, "critic")
    cfg = cfg or CriticTrainingConfig()
    info: dict[str, Any] = {"classes": list(CRITIC_CLASSES)}

    def factory(model: str, tokenizer: Any, dataset: Any, stage: Path, peft_cfg: Any) -> Any:
        import datasets
        from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer

        del peft_cfg  # the shared loop's adapters are for a causal LM; a classifier's are built below
        labels = check_labels(dataset, label)
        prompts = [prompt_text(tokenizer, p) for p in dataset["prompt"]]
        texts = [join_prompt_code(p, c) for p, c in zip(prompts, dataset["code"])]
        by_problem = cfg.eval_by_problem and GROUP_COLUMN in dataset.column_names
        groups = dataset[GROUP_COLUMN] if by_problem else None
        train_idx, eval_idx, how = split_eval(len(labels), cfg.eval_fraction, seed, groups)
        counts = class_counts([labels[i] for i in train_idx], len(CRITIC_CLASSES))
        weights = resolve_class_weights(cfg.class_weights, counts)
        info.update(train_rows_per_class=_names(counts), class_weights=weights, eval_split=how)
        logger.info("critic: %d training rows per class %s, %d eval rows (%s split), class weights %s",
                    len(train_idx), _names(counts), len(eval_idx), how, weights)

        net = load_classifier(AutoModelForSequenceClassification, model, tokenizer, CRITIC_CLASSES, seed,
                              cfg.lora, "SEQ_CLS")
        ids = encode(tokenizer, texts, cfg.max_length)
        train_ds = datasets.Dataset.from_dict({"input_ids": [ids[i] for i in train_idx],
                                               "labels": [labels[i] for i in train_idx]})

        class CriticTrainer(Trainer):
            def train(self, *args: Any, **kwargs: Any) -> Any:
                result = super().train(*args, **kwargs)
                if eval_idx:  # held-out rows, scored by the trained model before it is saved
                    probs = class_probabilities(self.model, tokenizer, [ids[i] for i in eval_idx],
                                                cfg.per_device_eval_batch_size, self.args.device)
                    preds = [max(range(len(p)), key=p.__getitem__) for p in probs]
                    info["eval"] = {**accuracy_report([labels[i] for i in eval_idx], preds, CRITIC_CLASSES),
                                    "split": how}
                    logger.info("critic eval: accuracy %s, per class %s", info["eval"]["accuracy"],
                                info["eval"]["per_class_accuracy"])
                return result

        return CriticTrainer(model=net, args=cfg.training_args(stage, seed), train_dataset=train_ds,
                             data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                             compute_loss_func=weighted_loss(weights))

    return run_training("critic", factory, cfg, files, model_path, Path(output_dir), CRITIC_COLUMNS,
                        seed=seed, overwrite=overwrite, extra_report=info)


# --------------------------------------------------------------------------- scoring


class CriticScorer:
    """A trained critic loaded once: ``scores(prompts, codes)`` -> class probabilities per program.

    ``device``: "cuda", "cpu", ...; None: CUDA when visible. The model runs in bfloat16 where the
    hardware has it (float16 on a GPU without it, float32 otherwise); probabilities are normalized in
    float32. ``max_length``: None takes the one the critic was trained with (its training report)."""

    def __init__(self, model_dir: str | Path, *, device: str | None = None, max_length: int | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .classifier import ensure_pad_token

        folder = resolve_model(model_dir)
        self.device, dtype = inference_setup(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
        archs = getattr(self.model.config, "architectures", None) or []
        if self.model.config.num_labels != len(CRITIC_CLASSES) or not any(
                a.endswith("ForSequenceClassification") for a in archs):
            raise ValueError(f"{folder} is not a critic: expected a sequence classifier over "
                             f"{len(CRITIC_CLASSES)} classes, found {archs or 'no architecture'} with "
                             f"{self.model.config.num_labels} labels (train one with plumline train critic)")
        ensure_pad_token(self.tokenizer, self.model)
        self.model.to(self.device).eval()
        self.max_length = max_length or _trained_max_length(Path(folder))

    def scores(self, prompts: Sequence[Any], codes: Sequence[str], batch_size: int = 16) -> list[list[float]]:
        """Probabilities of (compile error, runtime error, failed tests, passed) for each (prompt, code),
        in input order; each list sums to 1. Prompts are strings (the exact text the policy saw) or
        role/content messages (rendered with the tokenizer's chat template)."""
        if len(prompts) != len(codes):
            raise ValueError(f"{len(prompts)} prompts but {len(codes)} programs")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not codes:
            return []
        texts = [join_prompt_code(prompt_text(self.tokenizer, p), c) for p, c in zip(prompts, codes)]
        ids = encode(self.tokenizer, texts, self.max_length)
        return class_probabilities(self.model, self.tokenizer, ids, batch_size, self.device)


def _trained_max_length(folder: Path) -> int:
    try:
        value = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))["config"]["max_length"]
        return int(value) if value else DEFAULT_MAX_LENGTH
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_LENGTH


def critic_scores(model_dir: str | Path, prompts: Sequence[Any], codes: Sequence[str],
                  batch_size: int = 16, *, device: str | None = None,
                  max_length: int | None = None) -> list[list[float]]:
    """Class probabilities per program from the critic in ``model_dir`` (a ``plumline train critic``
    output folder), batched, without gradients: ``[[p_compile_error, p_runtime_error, p_failed_tests,
    p_passed], ...]`` in input order, each summing to 1. For reranking, the program with the highest
    ``scores[i][PASSED_CLASS]`` is the one the critic likes best. Loads the model on each call: use
    ``CriticScorer`` to score several batches with one load. Raises ``FileNotFoundError`` for a missing
    folder and ``ValueError`` for a folder that is not a 4-class critic or mismatched inputs."""
    return CriticScorer(model_dir, device=device, max_length=max_length).scores(prompts, codes, batch_size)
