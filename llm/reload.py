"""Whether a running engine can take another checkpoint's weights in place, instead of a new engine.

A round's trained policy differs from the policy the round sampled from only in its weight values: the
same architecture, tokenizer, generation settings, tensor names and shapes. vLLM reloads the weights of
a live engine (about a second for SmolLM2) where a new engine start costs ~40 s on 2 CPU cores. Any
other difference would make the reloaded engine serve something other than what a fresh engine on the
new folder would, so it needs a new engine: ``reload_obstacle`` names the first such difference, and
``None`` means the two folders hold the same model up to weight values.

Pure file checks (JSON and safetensors headers, no weights read, no torch): fast enough to run before
every reload, and testable on small fake folders.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

# config.json keys that do not change the model an engine serves: the engine's dtype is plumline's own
# choice (llm/hardware.py), never the checkpoint's; the rest is bookkeeping of whoever saved it.
IGNORED_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "torch_dtype", "dtype",
                                 "use_cache"})
IGNORED_TOKENIZER_KEYS = frozenset({"name_or_path", "tokenizer_file"})
# Everything that decides how text becomes tokens and back, and how chats are rendered.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json")


def reload_obstacle(current: str | Path, new: str | Path) -> str | None:
    """Why an engine serving the model folder ``current`` cannot simply load ``new``'s weights, or
    None when it can (same config, generation config, tokenizer, and tensor names and shapes)."""
    cur, nxt = Path(current), Path(new)
    for p in (cur, nxt):
        if not (p / "config.json").is_file():
            return f"{p} is not a local model folder (no config.json)"
    cur_config, new_config = _config(cur), _config(nxt)
    if cur_config != new_config:
        return f"config.json differs ({_first_difference(cur_config, new_config)})"
    if _generation_config(cur) != _generation_config(nxt):
        return "generation_config.json differs (stop tokens or defaults)"
    for name in TOKENIZER_FILES:
        if _tokenizer_file(cur / name) != _tokenizer_file(nxt / name):
            return f"tokenizer file {name} differs"
    try:
        cur_tensors, new_tensors = tensor_shapes(cur), tensor_shapes(nxt)
    except ValueError as exc:
        return str(exc)
    if cur_tensors != new_tensors:
        names = sorted(set(cur_tensors) ^ set(new_tensors)) or sorted(
            n for n in cur_tensors if cur_tensors[n] != new_tensors[n])
        return f"weight tensors differ in names or shapes (first: {names[0]})"
    return None


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the folder's ``*.safetensors`` files, from their headers only.
    ValueError when there are none or a header is unreadable (vLLM's reload reads safetensors)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} has no .safetensors weights")
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        for name, meta in _safetensors_header(f).items():
            if name != "__metadata__":
                shapes[name] = tuple(meta["shape"])
    return shapes


def _safetensors_header(path: Path) -> dict[str, Any]:
    # The format: 8 bytes little-endian header length, then that many bytes of JSON.
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100 << 20:
                raise ValueError("header larger than 100 MiB")
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise ValueError(f"cannot read the safetensors header of {path}: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"cannot read the safetensors header of {path}: not a JSON object")  # noqa: TRY004
    return header


def _config(folder: Path) -> Any:
    return _without(_json(folder / "config.json"), IGNORED_CONFIG_KEYS)


def _generation_config(folder: Path) -> Any:
    return _without(_json(folder / "generation_config.json"), {"transformers_version"})


def _without(data: Any, keys: frozenset[str] | set[str]) -> Any:
    """A JSON object minus bookkeeping ``keys``; anything else (absent, unreadable bytes) as it is."""
    return {k: v for k, v in data.items() if k not in keys} if isinstance(data, dict) else data


def _tokenizer_file(path: Path) -> Any:
    """One tokenizer file in comparable form: parsed JSON (formatting aside) or bytes; None if absent."""
    if not path.is_file():
        return None
    return _without(_json(path), IGNORED_TOKENIZER_KEYS) if path.suffix == ".json" else path.read_bytes()


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.read_bytes()  # unreadable as JSON: compared byte for byte


def _first_difference(a: Any, b: Any) -> str:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "one of them is not a JSON object"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f"key {keys[0]!r}: {a.get(keys[0])!r} vs {b.get(keys[0])!r}" if keys else "?"
