"""The wheel, installed outside the checkout: the commands run and the bundled configs and problems
come from the installed package, not from a git checkout.

The wheel is built from a copy of the working tree (tracked and new files, as git lists them) and
installed with ``--no-deps`` into a fresh venv; that venv sees the dependencies of the project's
.venv through a ``.pth`` line (a plain path: the .venv's own .pth files, among them the editable
install of plumline, are not processed), so nothing is downloaded and plumline comes only from the
wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from import_graph import ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 120):
    r = subprocess.run(cmd, cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(map(str, cmd))
    assert r.returncode == 0, f"{shown} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked-but-not-ignored files)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not (src.exists() or src.is_symlink()):
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, venv, elsewhere = tmp / "src", tmp / "dist", tmp / "venv", tmp / "elsewhere"
    _copy_tree(src)
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--disable-pip-version-check", "-w", str(dist), str(src)], cwd=tmp, timeout=300)
    # The package data is declared so that setuptools has nothing to warn about (setup stays quiet).
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr
    (wheel,) = dist.glob("plumline-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    # Install first, then let the venv see .venv's packages: pip never sees the editable plumline.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", str(wheel)], cwd=tmp, timeout=300)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    (site / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere.mkdir()
    return {"venv": venv, "site": site, "cwd": elsewhere, "wheel": wheel}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PLUMLINE_CACHE"] = env.get("PLUMLINE_CACHE", str(Path.home() / ".cache" / "plumline"))
    return env


def _plumline(installed: dict[str, Path], *args: str):
    return _run([str(installed["venv"] / "bin" / "plumline"), *args], cwd=installed["cwd"], env=_env())


def test_the_wheel_ships_the_configs_and_problems(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"plumline/pipeline/configs/demo.yaml", "plumline/pipeline/configs/humaneval.yaml",
            "plumline/pipeline/configs/tiny.yaml", "plumline/pipeline/assets/easy_problems.jsonl",
            "plumline/pipeline/assets/easy_train.jsonl", "plumline/pipeline/assets/easy_eval.jsonl",
            "plumline/trainers/__main__.py", "plumline/sandbox/__main__.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "configs/")) for n in names)


def test_config_list_and_show_come_from_the_installed_package(installed):
    site = str(installed["site"])
    listed = dict(line.split("\t") for line in _plumline(installed, "config", "list").stdout.splitlines())
    assert set(listed) >= {"demo", "humaneval", "tiny"}
    assert all(path.startswith(site) for path in listed.values()), listed
    shown = yaml.safe_load(_plumline(installed, "config", "show", "demo").stdout)
    assert shown["name"] == "demo" and [s["path"] for s in shown["sources"]] == ["bundled:easy-train"]
    checked = json.loads(_plumline(installed, "config", "check", "demo").stdout.strip().splitlines()[-1])
    assert checked["ok"] is True and checked["name"] == "demo"


def test_the_demo_config_resolves_to_the_packaged_problems(installed):
    code = (
        "import json, plumline\n"
        "from plumline.pipeline.cli import config_path\n"
        "from plumline.pipeline.config import load_config\n"
        "from plumline.transforms.logic.readers import expand_paths\n"
        "path = config_path('demo')\n"
        "cfg = load_config(path)\n"
        "print(json.dumps({'package': plumline.__file__, 'config': str(path),\n"
        "                  'files': [f for s in cfg.sources for f in expand_paths(s)]}))\n"
    )
    r = _run([str(installed["venv"] / "bin" / "python"), "-c", code], cwd=installed["cwd"], env=_env())
    out = json.loads(r.stdout.strip().splitlines()[-1])
    site = str(installed["site"])
    assert out["package"].startswith(site), out  # not the checkout
    assert out["config"].startswith(site)
    (problems,) = out["files"]
    assert problems.startswith(site) and problems.endswith("pipeline/assets/easy_train.jsonl")
    assert Path(problems).stat().st_size > 1000


def test_every_command_answers_help_from_the_wheel(installed):
    for args in (["--help"], ["exec", "--help"], ["train", "dpo", "--help"], ["assets", "prepare", "--help"],
                 ["run", "--help"], ["config", "list", "--help"]):
        assert "Usage" in _plumline(installed, *args).stdout
    python = str(installed["venv"] / "bin" / "python")
    for module in ("plumline.trainers", "plumline.sandbox"):
        r = _run([python, "-m", module, "--help"], cwd=installed["cwd"], env=_env())
        assert "Exit codes" in r.stdout
