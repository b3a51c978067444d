"""Generation: one interface (``GenerationBackend``), three engines (vLLM in-process, an
OpenAI-compatible server, transformers), the one policy-prompt renderer and code extraction. No Beam
import here.

Typical use (what the sampling stage does)::

    backend = get_shared_backend(BackendConfig(kind="vllm", model=path))
    prompt = backend.build_prompt(problem.prompt, problem.entry_point, PromptConfig())
    # = render_prompt(PromptConfig(), problem.prompt, problem.entry_point,
    #                 chat=backend.chat, render_chat=backend.render_chat)
    req = GenerationRequest(request_id=problem.problem_id, prompt=prompt, n=8, temperature=0.8,
                            top_p=0.95, max_tokens=512, seed=seed)
    results = backend.generate([req, req.greedy()])   # + one greedy sample (CodeRL baseline)
    code = extract_code(results[0].completions[0].text, entry_point=problem.entry_point)
"""

from .base import GenerationBackend
from .config import BackendConfig
from .extract import extract_code, strip_main_guards
from .prompting import DEFAULT_INSTRUCTION, PromptConfig, make_messages, prompt_messages, render_prompt
from .registry import (
    cancel_shared_generation,
    close_shared_backend,
    close_shared_backends,
    get_shared_backend,
    make_backend,
    park_shared_backends,
    resume_shared_generation,
    shares_running_batch,
)
from .types import GREEDY_SUFFIX, Completion, GenerationRequest, GenerationResult

__all__ = [
    "DEFAULT_INSTRUCTION",
    "GREEDY_SUFFIX",
    "BackendConfig",
    "Completion",
    "GenerationBackend",
    "GenerationRequest",
    "GenerationResult",
    "PromptConfig",
    "cancel_shared_generation",
    "close_shared_backend",
    "close_shared_backends",
    "extract_code",
    "get_shared_backend",
    "make_backend",
    "make_messages",
    "park_shared_backends",
    "prompt_messages",
    "render_prompt",
    "resume_shared_generation",
    "shares_running_batch",
    "strip_main_guards",
]
