"""Code extraction from completions: fences, entry points, bare code, prose, hostile input."""

from __future__ import annotations

import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st
from plumline.llm import extract_code, strip_main_guards
from plumline.llm.extract import defines, fenced_blocks

F = "```"


def test_python_fence_with_prose_around():
    text = f"Sure! Here it is:\n{F}python\ndef add(a, b):\n    return a + b\n{F}\nThis adds numbers."
    assert extract_code(text) == "def add(a, b):\n    return a + b"


def test_py_and_bare_fences_and_tildes():
    assert extract_code(f"{F}py\nx = 1\n{F}") == "x = 1"
    assert extract_code(f"{F}\nx = 2\n{F}") == "x = 2"
    assert extract_code("~~~python\nx = 3\n~~~") == "x = 3"
    assert extract_code(f"{F}Python3 title=sol.py\nx = 4\n{F}") == "x = 4"


def test_unterminated_fence_runs_to_end():
    text = f"Here:\n{F}python\ndef f(n):\n    total = 0\n    for i in range(n):\n        total += i"
    assert extract_code(text) == "def f(n):\n    total = 0\n    for i in range(n):\n        total += i"


def test_other_languages_are_ignored():
    text = f"{F}bash\npip install numpy\n{F}\n{F}python\nimport numpy\n{F}\n{F}text\nOutput: 3\n{F}"
    assert extract_code(text) == "import numpy"
    assert extract_code(f"{F}bash\nls -la\n{F}") is None


def test_entry_point_block_wins_over_longer_ones():
    usage = "\n".join(f"print(solve({i}))" for i in range(30))
    text = (f"{F}python\ndef helper():\n    pass\n{F}\n{F}python\ndef solve(x):\n    return x * 2\n{F}\n"
            f"Usage:\n{F}python\n{usage}\n{F}")
    assert extract_code(text, "solve") == "def solve(x):\n    return x * 2"
    # Without the entry point the longest parsing block is taken.
    assert extract_code(text) == usage


def test_last_defining_block_is_the_revision():
    text = (f"First try:\n{F}python\ndef f(x):\n    return x\n{F}\nBetter:\n"
            f"{F}python\ndef f(x):\n    return abs(x)\n{F}")
    assert extract_code(text, "f") == "def f(x):\n    return abs(x)"


def test_entry_point_as_class_or_assignment():
    assert defines("class Solution:\n    pass", "Solution")
    assert defines("f = lambda x: x", "f")
    assert not defines("def g():\n    f = 1", "f")  # only top-level definitions count
    assert defines("def f(:\n  broken", "f")  # regex fallback when the code does not parse


def test_prefers_parsing_block_when_no_entry_point():
    broken = "def f(:\n" + "    x = 1\n" * 20
    text = f"{F}python\n{broken}{F}\n{F}python\ndef g():\n    return 1\n{F}"
    assert extract_code(text) == "def g():\n    return 1"
    # A block that does not compile is still returned when it is the only one (compile-error sample).
    assert extract_code(f"{F}python\ndef f(:\n    pass\n{F}") == "def f(:\n    pass"


def test_bare_code_without_fence():
    assert extract_code("def f(x):\n    return x + 1\n") == "def f(x):\n    return x + 1"
    assert extract_code("import math\nprint(math.pi)") == "import math\nprint(math.pi)"


def test_prose_then_bare_code_then_prose():
    text = "Sure, here is the function.\ndef g(a):\n    return a + 1\nThis returns a plus one."
    assert extract_code(text) == "def g(a):\n    return a + 1"


def test_prose_only_is_none():
    for text in ["", "   \n\t", "Hello", "Hello world", "I cannot solve this problem.",
                 "The answer is 42.", "True", "Sorry, as an AI I can't.", F, f"{F}python\n{F}"]:
        assert extract_code(text) is None, text


def test_indented_fence_in_list_item_is_dedented():
    text = f"1. Do this:\n   {F}python\n   def f():\n       return 1\n   {F}"
    assert extract_code(text) == "def f():\n    return 1"


def test_crlf_line_endings():
    text = f"{F}python\r\ndef f():\r\n    return 1\r\n{F}\r\n"
    assert extract_code(text) == "def f():\n    return 1"


def test_main_guard_stripped_for_function_problems_only():
    code = "def f(x):\n    return x\n\nif __name__ == '__main__':\n    print(f(input()))"
    text = f"{F}python\n{code}\n{F}"
    assert extract_code(text, "f") == "def f(x):\n    return x"
    assert extract_code(text) == code  # stdin program: the guard is the program
    assert extract_code(text, "f", strip_main_guard=False) == code
    assert "__main__" not in strip_main_guards('def a():\n    pass\nif "__main__" == __name__:\n    a()\n')
    # Other ifs survive; code that does not parse is left alone.
    assert strip_main_guards("if x == '__main__':\n    pass") == "if x == '__main__':\n    pass"
    assert strip_main_guards("if __name__ == '__main__':\n  (") == "if __name__ == '__main__':\n  ("


def test_nested_fence_lengths():
    text = "````markdown\n```python\nx = 1\n```\n````\n```python\ny = 2\n```"
    blocks = fenced_blocks(text)
    assert blocks[0][0] == "markdown" and "x = 1" in blocks[0][1]
    assert extract_code(text) == "y = 2"


def test_huge_and_hostile_inputs_do_not_crash():
    assert extract_code("(" * 100_000) is None  # deep nesting: no RecursionError escapes
    assert extract_code("x = " + "(" * 100_000 + ")" * 100_000) is None  # too deep to parse: not code
    big = f"{F}python\n" + "x = 1\n" * 200_000 + F
    assert extract_code(big).count("\n") == 199_999
    assert extract_code("\x00\x01" * 1000) is None
    # returned, even though it does not parse
    assert extract_code(f"{F}python\n" + "[" * 5000 + f"\n{F}") is not None
    assert extract_code(None) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.one_of(st.none(), st.text(max_size=10)))
def test_never_crashes(text, entry_point):
    out = extract_code(text, entry_point)
    assert out is None or (isinstance(out, str) and out.strip())


_line = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40).filter(
    lambda s: "`" not in s and "~~~" not in s)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, min_size=1, max_size=12), st.text(alphabet="abc .,!?", max_size=30))
def test_fenced_roundtrip(lines, prose):
    code = "\n".join(line.rstrip() for line in lines)
    code = textwrap.dedent(code).strip("\n").rstrip()
    if not code.strip():
        return
    text = f"{prose}\n{F}python\n{code}\n{F}\n{prose}"
    assert extract_code(text, strip_main_guard=False) == code


def test_bare_code_followed_by_a_stray_closing_fence_is_extracted():
    # Seen on HumanEval with SmolLM2: the answer starts without a fence and ends with one.
    text = "def list_sort(lst):\n    lst = sorted(lst)\n    return lst\n```"
    assert extract_code(text, "list_sort") == "def list_sort(lst):\n    lst = sorted(lst)\n    return lst"
    assert extract_code("Sure, here it is:\n```", "list_sort") is None  # prose and an empty fence: no code
    assert extract_code("```python\n```\n", "f") is None
