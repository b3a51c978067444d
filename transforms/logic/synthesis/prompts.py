"""Prompts for the test-writer model: chat messages for instruct models, a plain-text variant
that base models continue with asserts."""

from __future__ import annotations

import re

from plumline.data_schemas import Problem

SYSTEM_PROMPT = ("You are an expert Python tester. You write correct, self-contained unit tests as "
                 "assert statements. You never write the solution itself.")


def _signature(problem: Problem) -> str:
    """The entry point's `def` line, from the starter code or the prompt, when there is one."""
    for text in (problem.starter_code, problem.prompt):
        m = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(.*?\)\s*(?:->[^:]*)?:",
                      text or "", re.MULTILINE | re.DOTALL) if problem.entry_point else None
        if m:
            return m.group(0).strip()
    return ""


def build_test_prompt(problem: Problem, k: int = 10) -> list[dict[str, str]]:
    """Chat messages asking for ``k`` assert tests of ``problem.entry_point``."""
    ep = problem.entry_point
    parts = ["Here is a programming problem:", "", "```python" if "def " in problem.prompt else "",
             problem.prompt.strip(), "```" if "def " in problem.prompt else ""]
    sig = _signature(problem)
    if sig and sig not in problem.prompt:
        parts += ["", f"The function signature is: `{sig}`"]
    examples = [t.code.strip() for t in problem.example_tests if t.code.strip()]
    if examples:
        parts += ["", "Examples:", "```python", *examples, "```"]
    parts += [
        "",
        (f"Write {k} different unit tests for `{ep}` as Python assert statements, for example "
         f"`assert {ep}(...) == ...`. Each assert calls `{ep}` directly and checks one exact expected "
         f"result; cover normal cases and edge cases. Do not define `{ep}`, do not use input(), files, "
         f"random numbers or printing. Reply with one ```python block that holds only the asserts."),
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(p for p in parts if p is not None)}]


def build_test_prompt_text(problem: Problem, k: int = 10) -> str:
    """Plain-text (completion) variant for base models: the problem, then the start of a test block
    the model continues with asserts."""
    ep = problem.entry_point
    body = problem.prompt.rstrip()
    if "def " in body:
        body += "\n    ...\n"
    else:
        body = '"""\n' + body.replace('"""', "'''") + '\n"""\n'
    return (f"{body}\n\n# {k} unit tests for {ep}: each is one assert that calls {ep} and checks the exact "
            f"expected result.\nassert {ep}(")


def reply_prefix(chat: bool, entry_point: str) -> str:
    """What the plain-text prompt already wrote of the first test (prepended to the reply)."""
    return "" if chat else f"assert {entry_point}("
