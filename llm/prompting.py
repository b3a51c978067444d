"""Turning a problem into the text a policy sees: ONE renderer, chat or plain.

``render_prompt(cfg, problem_text, entry_point, chat=..., render_chat=...)`` is the only place a policy
prompt is built: the sample stage, the conversational DPO/KTO prompt column (``prompt_messages``, the
same messages), ``GenerationBackend.build_prompt``, the benches and the package's usage example all
go through it, so what is timed, sampled and trained on is one text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in one ```python code block."
)

RenderChat = Callable[[list[dict[str, str]]], str]


class PromptConfig(BaseModel):
    """What the policy is told besides the problem (the run config's ``prompt`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str | None = Field(
        None, description="System message (chat models) or first paragraph (base models) of every policy "
                          "prompt; null: none.")
    instruction: str = Field(
        DEFAULT_INSTRUCTION,
        description="Text put before the problem: the start of the user message (chat models) or a "
                    "paragraph before the problem (base models); empty: the problem alone.")


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


def _check_problem(problem_text: str) -> None:
    if not isinstance(problem_text, str) or not problem_text.strip():
        raise ValueError("problem prompt is empty")


def prompt_messages(cfg: PromptConfig, problem_text: str,
                    entry_point: str | None = None) -> list[dict[str, str]]:
    """The chat messages of one problem: ``[system?, user]``, user = instruction + blank line + problem.

    A problem with an entry point (a function to complete) is put in a ```python fence unless its text
    already holds one, so the model sees code as code."""
    _check_problem(problem_text)
    body = problem_text.rstrip()
    if entry_point and "```" not in body:
        body = f"```python\n{body}\n```"
    instruction = cfg.instruction.strip()
    user = f"{instruction}\n\n{body}" if instruction else body
    return make_messages(user, cfg.system_prompt)


def render_prompt(cfg: PromptConfig, problem_text: str, entry_point: str | None = None, *, chat: bool,
                  render_chat: RenderChat) -> str:
    """THE policy prompt of one problem.

    chat=True: ``render_chat(prompt_messages(...))``; the backend's chat template appends the assistant
    header. chat=False (base models): system prompt, instruction and the problem text, joined by blank
    lines, with the problem text last and unchanged so the model continues the function (the program
    is then ``problem_text + completion``). Raises ``ValueError`` for an empty problem.
    """
    if chat:
        return render_chat(prompt_messages(cfg, problem_text, entry_point))
    _check_problem(problem_text)
    parts = [p.strip() for p in (cfg.system_prompt, cfg.instruction) if p and p.strip()]
    return "\n\n".join([*parts, problem_text])
