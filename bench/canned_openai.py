"""A test double for a remote model, for tests and benches: an OpenAI-compatible HTTP server on
127.0.0.1 whose replies are canned from the bundled easy problems (reference solutions, wrong programs,
prose without code, the dataset's tests plus one wrong test). It lets the whole round run through the
real openai backend, real Beam, the real sandbox and real Parquet with known right answers.
`python bench/canned_openai.py` serves it until killed and prints its base URL first."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EASY = Path(__file__).resolve().parents[1] / "examples" / "easy_problems.jsonl"


def load_easy() -> dict[str, dict]:
    rows = [json.loads(line) for line in EASY.read_text().splitlines() if line.strip()]
    return {r["entry_point"]: r for r in rows}


def wrong_test(test: str) -> str:
    """``assert f(x) == y`` -> ``assert f(x) != y``: a test the reference fails."""
    return test.replace("==", "!=", 1) if "==" in test else test + " and False"


def calls_of(code: str, name: str) -> list[str]:
    """The calls of ``name`` in ``code`` (``f(1, [2])``), as source text."""
    import ast
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [ast.get_source_segment(code, node) or "" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name]


class CannedModel:
    def __init__(self):
        self.problems = load_easy()
        self.requests: list[dict] = []

    def _problem(self, text: str) -> dict | None:
        for name, row in self.problems.items():
            if re.search(rf"\bdef {re.escape(name)}\(", text) or f"`{name}`" in text:
                return row
        return None

    def reply(self, body: dict) -> list[str]:
        self.requests.append(body)
        text = "\n".join(m["content"] for m in body.get("messages", [])) or body.get("prompt", "")
        n = int(body.get("n", 1))
        row = self._problem(text)
        if row is None:
            return ["I do not understand the question."] * n
        name = row["entry_point"]
        if "different inputs for" in text:  # input-first synthesis: the calls of the problem's own tests
            calls = [c for t in row["given_tests"] for c in calls_of(t["code"], name)]
            return ["```python\n" + "\n".join(dict.fromkeys(calls)) + "\n```"] * n
        if "unit tests" in text:
            tests = [t["code"] for t in row["given_tests"]]
            return ["```python\n" + "\n".join(tests + [wrong_test(tests[0])]) + "\n```"] * n
        good = f"Sure:\n```python\n{row['reference_solution']}```\n"
        bad = f"```python\ndef {name}(*args, **kwargs):\n    return None\n```"
        prose = "I would rather explain the idea in words."
        cycle = [good, bad, prose, good.replace("Sure:", "Here you go:")]
        if body.get("temperature", 1.0) == 0.0:
            return [good]
        return [cycle[i % len(cycle)] for i in range(n)]


def serve(model: CannedModel) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            self._send(200, {"data": [{"id": "canned", "max_model_len": 100000}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = model.reply(body)
            chat = self.path.endswith("/chat/completions")
            choices = [({"index": i, "message": {"role": "assistant", "content": t}} if chat
                        else {"index": i, "text": t}) | {"finish_reason": "stop"}
                       for i, t in enumerate(texts)]
            self._send(200, {"choices": choices, "usage": {"prompt_tokens": 10,
                                                           "completion_tokens": 20 * len(texts)}})

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def main() -> None:
    """Serve until killed; prints the base URL on the first line (for benches in other processes)."""
    import time

    server, url = serve(CannedModel())
    print(url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
