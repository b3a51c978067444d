"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (a test double for the remote
model) that injects 500s, 429s, slow and malformed replies."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from plumline.llm import BackendConfig, GenerationRequest, PromptConfig, make_backend


class FakeServer:
    """Canned completions. A prompt's text drives the behaviour:
    ``fail:<code>:<k>`` fails the first k attempts with <code>; ``slow:<s>:<k>`` sleeps s seconds on the
    first k attempts; ``garbage`` returns non-JSON; ``nochoices`` returns an object without choices;
    ``sleep:<s>`` always sleeps s seconds (concurrency measurement)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, payload, headers=None):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "fake-model", "max_model_len": 4096}]})
                else:
                    self._send(404, {"error": "no"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._handle(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _handle(self, body):
                chat = self.path == "/v1/chat/completions"
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                with server.lock:
                    attempt = server.attempts.get(prompt, 0)
                    server.attempts[prompt] = attempt + 1
                parts = prompt.split(":")
                if parts[0] == "fail" and attempt < int(parts[2]):
                    code = int(parts[1])
                    headers = {"Retry-After": "0"} if code == 429 else None
                    return self._send(code, {"error": f"injected {code}"}, headers)
                if parts[0] == "slow" and attempt < int(parts[2]):
                    time.sleep(float(parts[1]))
                if parts[0] == "sleep":
                    time.sleep(float(parts[1]))
                if prompt == "garbage":
                    return self._send(200, b"<html>not json</html>")
                if prompt == "nochoices":
                    return self._send(200, {"id": "x"})
                choices = []
                for i in range(body.get("n", 1)):
                    text = f"```python\ndef f():\n    return {i}  # seed={body.get('seed')}\n```"
                    reply = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                    choices.append({"index": i, "finish_reason": "stop", **reply})
                choices.reverse()  # servers may return any order; the backend sorts by index
                usage = {"prompt_tokens": 5, "completion_tokens": 10 * len(choices)}
                self._send(200, {"choices": choices, "usage": usage})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _backend(server, **kw):
    cfg = {"kind": "openai", "model": "fake-model", "base_url": server.url, "backoff_s": 0.01,
           "max_retries": 3, "request_timeout_s": 5.0, "max_concurrency": 4, "endpoint": "completions",
           "api_key_env": None}
    cfg.update(kw)
    return make_backend(BackendConfig(**cfg))


def _req(rid, prompt, **kw):
    base = {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 32, "seed": 11}
    base.update(kw)
    return GenerationRequest(rid, prompt, **base)


def test_completions_n_seed_order_and_usage(server):
    with _backend(server) as b:
        assert b.max_context == 4096  # from the server's /models
        (res,) = b.generate([_req("a", "hello", n=3, seed=1234, stop=("\n\n",))])
    assert res.error is None
    assert [c.index for c in res.completions] == [0, 1, 2]
    assert res.completions[2].text.endswith("return 2  # seed=1234\n```")
    assert all(c.prompt_tokens == 5 and c.completion_tokens == 10 and c.finish_reason == "stop"
               for c in res.completions)
    body = server.bodies[0]
    assert body["n"] == 3 and body["seed"] == 1234 and body["stop"] == ["\n\n"]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.8 and body["top_p"] == 0.95 and body["max_tokens"] == 32


def test_retries_500_and_429_then_succeeds(server):
    with _backend(server) as b:
        res = b.generate([_req("a", "fail:500:2"), _req("b", "fail:429:3"), _req("c", "fail:502:1")])
    assert [r.error for r in res] == [None, None, None]
    assert server.attempts == {"fail:500:2": 3, "fail:429:3": 4, "fail:502:1": 2}


def test_gives_up_after_max_retries_and_batch_proceeds(server):
    with _backend(server, max_retries=2) as b:
        res = b.generate([_req("bad", "fail:503:99"), _req("good", "hello")])
    assert res[0].request_id == "bad" and res[0].completions == ()
    assert "gave up after 3 attempts" in res[0].error and "HTTP 503" in res[0].error
    assert res[1].error is None and len(res[1].completions) == 1
    assert server.attempts["fail:503:99"] == 3


def test_client_errors_are_not_retried(server):
    with _backend(server) as b:
        (res,) = b.generate([_req("a", "fail:400:99")])
    assert "HTTP 400" in res.error and "gave up" not in res.error
    assert server.attempts["fail:400:99"] == 1


def test_timeout_is_retried_then_reported(server):
    with _backend(server, request_timeout_s=0.3, max_retries=1) as b:
        t0 = time.monotonic()
        res = b.generate([_req("once", "slow:1.0:1"), _req("always", "slow:1.0:99")])
        elapsed = time.monotonic() - t0
    assert res[0].error is None  # first attempt timed out, the retry answered
    assert "Timeout" in res[1].error and "gave up after 2 attempts" in res[1].error
    assert elapsed < 3.0


def test_malformed_replies_fail_only_their_request(server):
    with _backend(server, max_retries=0) as b:
        res = b.generate([_req("g", "garbage"), _req("n", "nochoices"), _req("ok", "fine")])
    assert "not JSON" in res[0].error
    assert "no choices" in res[1].error
    assert res[2].error is None


def test_connection_refused_is_retried_and_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = BackendConfig(kind="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", backoff_s=0.01,
                        max_retries=2, endpoint="completions", api_key_env=None)
    with make_backend(cfg) as b:
        assert b.max_context is None  # /models unreachable: no local check, no crash
        (res,) = b.generate([_req("a", "hi")])
    assert "gave up after 3 attempts" in res.error and "ConnectError" in res.error


def test_concurrency_limit(server):
    with _backend(server, max_concurrency=2) as b:
        res = b.generate([_req(f"r{i}", f"sleep:0.15:{i}") for i in range(8)])
    assert all(r.error is None for r in res)
    assert [r.request_id for r in res] == [f"r{i}" for i in range(8)]
    assert server.max_in_flight == 2


def test_chat_endpoint_sends_messages(server, monkeypatch):
    monkeypatch.setenv("PLUMLINE_TEST_KEY", "sekret")
    with _backend(server, endpoint="auto", api_key_env="PLUMLINE_TEST_KEY") as b:
        assert b.endpoint == "chat" and b.chat  # no local tokenizer: the server applies its template
        prompt = b.build_prompt("Write f.", prompt=PromptConfig(system_prompt="Be terse.", instruction=""))
        assert json.loads(prompt) == [{"role": "system", "content": "Be terse."},
                                      {"role": "user", "content": "Write f."}]
        (res,) = b.generate([_req("a", prompt, n=2)])
    assert res.error is None and "return 1" in res.completions[1].text
    assert server.bodies[0]["messages"][0] == {"role": "system", "content": "Be terse."}
    assert server.headers[0]["Authorization"] == "Bearer sekret"


def test_too_long_prompt_is_not_sent(server, tiny_llama):
    with _backend(server, tokenizer=str(tiny_llama), max_model_len=64) as b:
        assert b.endpoint == "completions" and b.chat  # local template rendering
        prompt = b.build_prompt("def f():")
        assert prompt.startswith("<|im_start|>user\n")
        res = b.generate([_req("long", "x " * 500), _req("short", "hi", max_tokens=8)])
    assert res[0].error.startswith("prompt too long") and res[0].completions == ()
    assert res[1].error is None and res[1].completions[0].prompt_tokens == b.count_tokens("hi")
    assert [body["prompt"] for body in server.bodies] == ["hi"]


def test_invalid_requests_reported_not_raised(server):
    with _backend(server) as b:
        res = b.generate([_req("a", "hi", n=0), "not a request", _req("b", "hi")])  # type: ignore[list-item]
    assert "n must be" in res[0].error and res[0].request_id == "a"
    assert res[1].request_id == "#1" and "not a GenerationRequest" in res[1].error
    assert res[2].error is None
    assert len(server.bodies) == 1


def test_chat_endpoint_with_local_tokenizer_counts_template_tokens(server, tiny_llama):
    with _backend(server, endpoint="chat", tokenizer=str(tiny_llama), max_model_len=64) as b:
        bare = PromptConfig(instruction="")
        prompt = b.build_prompt("def f():", prompt=bare)
        assert json.loads(prompt)[-1]["content"] == "def f():"
        assert b.count_tokens(prompt) > b.count_tokens(json.dumps([{"role": "user", "content": ""}])) - 5
        long_prompt = b.build_prompt("x " * 200, prompt=bare)
        res = b.generate([_req("long", long_prompt), _req("ok", prompt, max_tokens=8)])
    assert res[0].error.startswith("prompt too long")
    assert res[1].error is None and len(server.bodies) == 1
