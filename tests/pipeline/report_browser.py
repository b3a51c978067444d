"""Render an HTML file in headless Chromium, offline, and say what it drew and what it asked the network
for (helpers of tests/pipeline/test_report_e2e.py; not a test module itself)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

# Chromium's own background services (updates, accounts, clock) still run with these off; their requests
# carry no page origin ("not an origin") and are told apart from the page's below.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-extensions", "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND"]
_LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-extension:")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Rendered:
    dom: str  # the DOM after the page's scripts ran
    page_requests: list[str]  # URLs the page asked for that are not local (file:, data:, ...)
    screenshot: Path


def render(html_file: Path, work: Path, *, width: int = 1200, height: int = 4400,
           budget_ms: int = 20000) -> Rendered:
    """Two fresh Chromium runs (each with its own --user-data-dir): one dumps the DOM after scripts
    ran, with a net-log; one takes a screenshot."""
    exe = chromium()
    assert exe, "chromium not installed"
    url = html_file.resolve().as_uri()
    net_log = work / "net-log.json"
    dom = subprocess.run(
        [exe, *_FLAGS, f"--user-data-dir={work / 'profile-dom'}", f"--log-net-log={net_log}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=True).stdout
    shot = work / "report.png"
    subprocess.run(
        [exe, *_FLAGS, f"--user-data-dir={work / 'profile-shot'}", f"--window-size={width},{height}",
         f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=180, check=True)
    return Rendered(dom=dom, page_requests=page_requests(net_log), screenshot=shot)


def page_requests(net_log: Path) -> list[str]:
    """URLs requested by the page (an origin, even the opaque "null" of a file page, as initiator),
    excluding local schemes. Chromium's own service requests have initiator "not an origin"."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    out = []
    for event in log["events"]:
        params = event.get("params") or {}
        if kinds.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if params.get("initiator") == "not an origin" or params["url"].startswith(_LOCAL_SCHEMES):
            continue
        out.append(params["url"])
    return out


class _Refs(HTMLParser):
    """src/href attributes of the page's tags and url(...) in its style blocks (script text is not
    markup: plotly's bundle holds attribution links as strings)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        self.refs += [v for k, v in attrs if k in ("src", "href", "srcset", "poster", "data") and v]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", data)


def external_refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return [r for r in parser.refs if re.match(r"^\s*(https?:|//|ftp:)", r, re.IGNORECASE)]


def plot_segments(dom: str, ids: list[str]) -> dict[str, str]:
    """Each plot's part of the DOM: from its element to the next plot's."""
    starts = sorted((dom.find(f'id="{i}"'), i) for i in ids)
    out = {}
    for n, (pos, plot_id) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(dom)
        out[plot_id] = dom[dom.rfind("<", 0, pos):end] if pos >= 0 else ""
    return out


def ink_fraction(png: Path) -> tuple[float, int]:
    """Share of pixels that are not near-white, and the number of distinct colours."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    small = img.resize((img.width // 4, img.height // 4))
    raw = small.tobytes()
    pixels = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    ink = sum(1 for p in pixels if min(p) < 235)
    return ink / len(pixels), len(set(pixels))
