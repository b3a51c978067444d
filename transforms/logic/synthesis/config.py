"""The ``tests`` section of a run config: how the test-writer model is asked for tests and which
tests are considered."""

from __future__ import annotations

from typing import Literal

from plumline.llm.config import BackendConfig  # the light module: no engine import
from pydantic import BaseModel, ConfigDict, Field


class TestSynthesisConfig(BaseModel):
    """How tests are written by the test-writer model and which ones are considered. Sampling is
    seeded per problem from the run's seed (``derive_seed(seed, "tests", problem_id)``)."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: Literal["inputs", "asserts"] = Field(
        "inputs", description="inputs: the writer proposes call inputs only (the docstring examples' inputs "
                              "are seeds too), type-aware mutation multiplies them, and the reference "
                              "solution gives the expected outputs (EvalPlus); without a reference, "
                              "agreement among the policy's samples does (see agreement_inputs); asserts: "
                              "the writer writes whole asserts (guessing expected values), validated in "
                              "execute.")
    agreement_inputs: bool = Field(
        True, description="inputs mode, problems without a reference solution: keep the inputs as probes; "
                          "execute runs the policy's samples on them and an input becomes a test when enough "
                          "samples agree on its output (validation.probe_min_share/probe_min_size); false: "
                          "such problems keep their example and given tests only.")
    enabled: bool = Field(True, description="Ask the test-writer model for tests or inputs (off: asserts "
                                            "mode keeps only example and given tests; inputs mode still "
                                            "mutates the examples' inputs, without a model call).")
    writer: BackendConfig | None = Field(None, description="Backend of the test-writer model; null uses the "
                                                           "policy's backend.")
    tests_per_problem: int = Field(10, ge=1, le=100, description="Tests (K) asked for in each reply (inputs "
                                                                 "mode: inputs asked for).")
    num_replies: int = Field(1, ge=1, le=32, description="Replies sampled per problem; their tests are "
                                                         "merged and deduplicated.")
    temperature: float = Field(0.2, ge=0.0, description="Sampling temperature of the test writer "
                                                        "(0 with one reply = greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling threshold of the test writer.")
    max_tokens: int = Field(768, ge=16, description="Maximum new tokens per reply.")
    max_test_chars: int = Field(1000, ge=16, description="Longest test snippet kept (characters); longer "
                                                         "ones are dropped as too_long.")
    max_tests_per_problem: int = Field(30, ge=1, description="Most synthesized tests kept per problem "
                                                             "after deduplication; the rest are over_limit.")
    use_examples: bool = Field(True, description="Turn examples in the problem text (docstring >>> lines, "
                                                 "'f(x) -> y' lines) into tests of origin 'example'.")
    given_tests_role: Literal["train", "eval", "both"] = Field(
        "eval", description="How a dataset's own tests are used: eval = reserved for evaluation only "
                            "(never training signal); train/both = also used as training tests.")
    chat: bool | None = Field(None, description="Prompt through the chat template; false: a plain-text "
                                                "prompt for base models; null: the writer backend's own "
                                                "choice.")
    max_inputs_per_problem: int = Field(40, ge=1, le=1000, description="inputs mode: most inputs (the "
                                                                       "model's plus mutations) per problem.")
    max_input_chars: int = Field(400, ge=8, description="inputs mode: longest input (argument source, "
                                                        "characters); longer ones are too_long.")
    mutate: bool = Field(True, description="inputs mode: multiply the seed inputs by type-aware mutation.")
    reduce: bool = Field(False, description="inputs mode: keep only tests that kill mutants of the reference "
                                            "the others do not (greedy set cover, EvalPlus). Off by default: "
                                            "mutants of the reference miss real bugs (a forgotten case, an "
                                            "empty input), so reduction lets wrong programs be chosen; turn "
                                            "it on when execution time matters more than precision.")
    reduce_mutants: int = Field(20, ge=1, description="inputs mode: mutants of the reference used to "
                                                      "reduce the suite.")
    reduce_min_tests: int = Field(5, ge=0, description="inputs mode: synthesized tests kept per problem "
                                                       "even when fewer kill every mutant.")
    batch_size: int = Field(64, ge=1, description="Problems sent to the test writer in one generate call.")
