"""Turning a problem into the text a model sees: chat template for instruct models, plain text for
base models, an optional system prompt."""

from __future__ import annotations

from collections.abc import Callable, Sequence

DEFAULT_INSTRUCTION = (
    "Write a correct, self-contained Python solution to the following problem. "
    "Return the complete code in a single ```python code block."
)


def make_messages(user: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """``[system?, user]`` in the role/content format every chat template takes."""
    messages = [] if not system_prompt else [{"role": "system", "content": system_prompt}]
    messages.append({"role": "user", "content": user})
    return messages


def plain_join(messages: Sequence[dict[str, str]]) -> str:
    """Render messages for a base model (no template): contents separated by blank lines.

    The last message is the one the model continues, so nothing is appended after it.
    """
    return "\n\n".join(m["content"] for m in messages if m.get("content"))


def build_prompt(problem_prompt: str, *, chat: bool, render_chat: Callable[[list[dict[str, str]]], str],
                 system_prompt: str | None = None, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """Render one problem as the text a model sees.

    chat=True: ``render_chat([system?, user])`` where user = instruction + blank line + problem; the
    chat template appends the assistant header (``add_generation_prompt``).
    chat=False (base models): ``system_prompt``, ``instruction`` and the problem joined by blank lines,
    with the problem last so the model continues it (HumanEval-style completion). In that mode the
    program is ``problem_prompt + completion``: pass that to ``extract_code``.
    ``instruction=None`` (or "") sends the problem alone.
    """
    if not isinstance(problem_prompt, str) or not problem_prompt.strip():
        raise ValueError("problem prompt is empty")
    user = f"{instruction.strip()}\n\n{problem_prompt}" if instruction else problem_prompt
    if chat:
        return render_chat(make_messages(user, system_prompt))
    parts = [p for p in (system_prompt, instruction) if p]
    return "\n\n".join([*parts, problem_prompt])
