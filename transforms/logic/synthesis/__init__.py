"""Test synthesis (PLUM stage 1): prompts for a test-writer model, a robust parser of its replies
with static checks, example tests taken from the problem text, the dataset's own tests kept apart,
and the per-problem statistics. Pure (no Beam, no engine): the engine's ``generate`` is passed in.

Modules: ``config`` (TestSynthesisConfig), ``prompts``, ``checks`` (static checks of one snippet,
duplicate normal form), ``parser`` (replies -> snippets), ``examples`` (tests from the problem
text), ``rows`` (TestCase rows and TestSynthesisStats of one problem), ``batch`` (one engine call
for a batch of problems). Input-first mode (EvalPlus): ``inputs`` (prompt and parser of call inputs),
``mutation`` (type-aware mutation), ``expected`` (expected outputs from the reference, agreement,
suite reduction), ``input_first`` (a batch's inputs to tests).
"""

from plumline.transforms.logic.synthesis.batch import synthesize_batch
from plumline.transforms.logic.synthesis.checks import check_test, normalize_test
from plumline.transforms.logic.synthesis.config import TestSynthesisConfig
from plumline.transforms.logic.synthesis.examples import extract_example_tests
from plumline.transforms.logic.synthesis.expected import agreed_output, expected_assert, reduce_suite
from plumline.transforms.logic.synthesis.inputs import build_inputs_prompt, parse_inputs_reply
from plumline.transforms.logic.synthesis.mutation import mutate_inputs, mutate_value
from plumline.transforms.logic.synthesis.parser import (
    DroppedTest,
    ParsedTests,
    parse_replies,
    parse_test_reply,
)
from plumline.transforms.logic.synthesis.prompts import (
    build_test_prompt,
    build_test_prompt_text,
    reply_prefix,
)
from plumline.transforms.logic.synthesis.rows import (
    ProblemTests,
    assemble_problem_tests,
    example_test_cases,
    given_test_cases,
    make_test_cases,
    problem_test_stats,
)

__all__ = [
    "DroppedTest", "ParsedTests", "ProblemTests", "TestSynthesisConfig", "agreed_output",
    "assemble_problem_tests", "build_inputs_prompt", "build_test_prompt", "build_test_prompt_text",
    "check_test", "example_test_cases", "expected_assert", "extract_example_tests", "given_test_cases",
    "make_test_cases", "mutate_inputs", "mutate_value", "normalize_test", "parse_inputs_reply",
    "parse_replies", "parse_test_reply", "problem_test_stats", "reduce_suite", "reply_prefix",
    "synthesize_batch",
]
