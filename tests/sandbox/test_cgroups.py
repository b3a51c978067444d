"""cgroup handling of the sandbox (sandbox/isolation.py): CgroupSet, the v2 probe, the stale sweep.

Three layers:
- ``FakeKernel``: a temporary directory standing in for a cgroup v2 mount, with the kernel rules the code
  relies on (no internal processes -> EBUSY, controllers must be available, a process lives in one
  cgroup, rmdir of a busy group fails). It replaces only isolation's three cgroupfs write helpers.
- real cgroup v1 (what this machine runs): a slot cgroup with real processes in it.
- a real cgroup2 mount (the hybrid host's /sys/fs/cgroup/unified, or a fresh ``mount -t cgroup2``):
  kill/freeze/remove on the real kernel, the real EBUSY, and the leaf move inside a real cgroup namespace.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from plumline.sandbox import isolation as iso
from plumline.sandbox.isolation import V2_LEAF, CgroupSet


# ------------------------------------------------------------------------------------------------
# A stand-in kernel for cgroup v2
# ------------------------------------------------------------------------------------------------
class FakeKernel:
    """A tmp dir imitating a cgroup v2 mount. ``real_root``: is the top the real root cgroup (which the
    kernel exempts from the no-internal-processes rule) or a namespace root (which it does not)?"""

    DOMAIN = frozenset({"memory", "io", "hugetlb"})

    def __init__(self, top: Path, controllers=("cpu", "memory", "pids", "io"), *, real_root=False,
                 kill_file=True, swap_file=True):
        self.top = top
        self.real_root = real_root
        self.kill_file = kill_file
        self.swap_file = swap_file
        self.writes: list[tuple[str, str]] = []  # (path relative to top, text)
        self.killed: list[str] = []
        self.rmdir_busy: dict[Path, int] = {}  # path -> how many rmdirs fail with EBUSY first
        self.on_procs_write = None  # hook(cgroup dir, pid) called after a move
        top.mkdir()
        self._populate(top, list(controllers))

    # -- files ---------------------------------------------------------------------------------
    def _populate(self, d: Path, available: list[str]) -> None:
        (d / "cgroup.controllers").write_text(" ".join(available) + "\n")
        for f, text in (("cgroup.subtree_control", ""), ("cgroup.procs", ""), ("cgroup.freeze", "0\n"),
                        ("cgroup.events", "populated 0\nfrozen 0\n"), ("cpu.stat", "usage_usec 0\n")):
            (d / f).write_text(text)
        if self.kill_file:
            (d / "cgroup.kill").write_text("")
        if "memory" in available:
            (d / "memory.max").write_text("max\n")
            (d / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
            if self.swap_file:
                (d / "memory.swap.max").write_text("max\n")
        if "pids" in available:
            (d / "pids.max").write_text("max\n")

    def procs(self, d: Path) -> list[int]:
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]

    def set_procs(self, d: Path, pids) -> None:
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))

    def groups(self):
        yield self.top
        yield from (p.parent for p in self.top.rglob("cgroup.procs") if p.parent != self.top)

    # -- the three replaced helpers --------------------------------------------------------------
    def mkdir(self, path: Path) -> None:
        if path.is_dir():
            return
        parent_enabled = (path.parent / "cgroup.subtree_control").read_text().split()
        path.mkdir()
        self._populate(path, parent_enabled)

    def rmdir(self, path: Path) -> None:
        if not path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if self.rmdir_busy.get(path, 0) > 0:
            self.rmdir_busy[path] -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        if self.procs(path) or any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        shutil.rmtree(path)

    def write(self, path: Path, text: str) -> None:
        if not path.is_file():  # the kernel never creates files
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        d, name = path.parent, path.name
        self.writes.append((str(path.relative_to(self.top)), text))
        if name == "cgroup.subtree_control":
            available = (d / "cgroup.controllers").read_text().split()
            enabled = (d / "cgroup.subtree_control").read_text().split()
            for tok in text.split():
                ctrl = tok[1:]
                if ctrl not in available:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
                if tok[0] == "+" and ctrl not in enabled:
                    if self.procs(d) and not (d == self.top and self.real_root):
                        raise OSError(errno.EBUSY, "Device or resource busy", str(path))
                    enabled.append(ctrl)
                elif tok[0] == "-" and ctrl in enabled:
                    enabled.remove(ctrl)
            (d / "cgroup.subtree_control").write_text(" ".join(enabled) + "\n")
        elif name == "cgroup.procs":
            pid = int(text)
            enabled = (d / "cgroup.subtree_control").read_text().split()
            if self.DOMAIN & set(enabled) and not (d == self.top and self.real_root):
                raise OSError(errno.EBUSY, "Device or resource busy", str(path))
            for g in self.groups():
                if pid in self.procs(g):
                    self.set_procs(g, [p for p in self.procs(g) if p != pid])
            self.set_procs(d, self.procs(d) + [pid])
            if self.on_procs_write:
                self.on_procs_write(d, pid)
        elif name == "cgroup.kill":
            self.killed.append(str(d.relative_to(self.top)))
            for g in [d, *(p.parent for p in d.rglob("cgroup.procs"))]:
                self.set_procs(g, [])
        elif name == "cgroup.freeze":
            frozen = text.strip() == "1"
            (d / "cgroup.freeze").write_text(f"{int(frozen)}\n")
            (d / "cgroup.events").write_text(f"populated {int(bool(self.procs(d)))}\nfrozen {int(frozen)}\n")
        else:
            path.write_text(text)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Factory: fake(controllers=..., real_root=..., own="/...", procs={rel: [pids]})
    -> (kernel, proc file)."""

    def make(own="/", procs=None, **kw):
        k = FakeKernel(tmp_path / "cg", **kw)
        monkeypatch.setattr(iso, "_cg_write", k.write)
        monkeypatch.setattr(iso, "_cg_mkdir", k.mkdir)
        monkeypatch.setattr(iso, "_cg_rmdir", k.rmdir)
        for rel, pids in (procs or {}).items():  # ancestors pass every controller down to rel
            d = k.top
            for part in Path(rel.strip("/")).parts:
                if not (d / part).exists():
                    (d / "cgroup.subtree_control").write_text((d / "cgroup.controllers").read_text())
                    k.mkdir(d / part)
                d = d / part
            k.set_procs(d, pids)
        pc = tmp_path / "proc_self_cgroup"
        pc.write_text(f"0::{own}\n")
        return k, pc

    return make


def _not_ours_pid() -> int:
    return 1  # init: never a descendant of the test process


# ------------------------------------------------------------------------------------------------
# The v2 probe
# ------------------------------------------------------------------------------------------------
def test_probe_enables_controllers_in_an_empty_own_cgroup(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    k, pc = fake(own="/svc", procs={"/svc": []})
    version, note = iso._probe_cgroup(True, root=k.top, proc_cgroup=pc)
    assert version == "v2", note
    assert set((k.top / "svc" / "cgroup.subtree_control").read_text().split()) >= {"memory", "pids"}
    assert ("svc/cgroup.subtree_control", "+memory +pids") in k.writes
    # the probe's own test cgroup was created with limits under svc and removed again
    assert any(p.startswith("svc/plumline-probe-") and p.endswith("memory.max") for p, _ in k.writes)
    assert not list((k.top / "svc").glob("plumline-*"))


def test_probe_is_a_no_op_when_controllers_are_already_enabled(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    k, pc = fake(own="/svc", procs={"/svc": [_not_ours_pid()]})
    (k.top / "svc" / "cgroup.subtree_control").write_text("memory pids\n")  # someone did it for us
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base == k.top / "svc" and "enabled" in note
    assert not [w for w in k.writes if w[0].endswith("subtree_control")]
    assert k.procs(k.top / "svc") == [1]  # nobody moved


def test_ebusy_at_the_namespace_root_moves_every_process_into_the_leaf(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    members = [1, 57, os.getpid()]
    k, pc = fake(own="/", procs={"/": members})  # a container with a private cgroup namespace
    version, note = iso._probe_cgroup(True, root=k.top, proc_cgroup=pc)
    assert version == "v2", note
    assert k.procs(k.top) == []
    assert sorted(k.procs(k.top / V2_LEAF)) == sorted(members)
    assert set((k.top / "cgroup.subtree_control").read_text().split()) >= {"memory", "pids"}
    assert "memory" not in (k.top / V2_LEAF / "cgroup.subtree_control").read_text()
    # after the move, /proc/self/cgroup names the leaf; slot cgroups still go next to it, not inside
    pc.write_text(f"0::/{V2_LEAF}\n")
    cg = CgroupSet("v2", "plumline-1-0-abc", root=k.top, proc_cgroup=pc)
    assert cg.dirs["unified"] == k.top / "plumline-1-0-abc"
    cg.create(256 << 20, 32)  # the fake refuses this if memory/pids are not enabled in the parent
    # a second probe (e.g. in a worker process born in the leaf) sees the controllers enabled
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base == k.top, note


def test_ebusy_elsewhere_touches_no_process_and_says_how_to_fix(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    members = [_not_ours_pid(), os.getpid()]
    k, pc = fake(own="/system.slice/app.service", procs={"/system.slice/app.service": members})
    version, note = iso._probe_cgroup(True, root=k.top, proc_cgroup=pc)
    assert version is None
    assert "EBUSY" in note and "no-internal-processes" in note
    assert "systemd-run --scope -p Delegate=yes" in note and "app.service" in note
    svc = k.top / "system.slice" / "app.service"
    assert k.procs(svc) == members
    assert not (svc / V2_LEAF).exists()
    assert (svc / "cgroup.subtree_control").read_text().split() == []


def test_ebusy_in_a_cgroup_holding_only_our_processes_moves_them(fake, monkeypatch):
    """`systemd-run --scope -p Delegate=yes python -m ...`: the scope holds just us (and our children)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    child = subprocess.Popen(["sleep", "30"])
    try:
        k, pc = fake(own="/run-u7.scope", procs={"/run-u7.scope": [os.getpid(), child.pid]})
        base, note = iso._enable_v2_controllers(k.top, pc)
        assert base == k.top / "run-u7.scope", note
        assert sorted(k.procs(base / V2_LEAF)) == sorted([os.getpid(), child.pid])
    finally:
        child.kill()
        child.wait()


def test_ebusy_in_a_cgroup_marked_delegated_moves_its_processes(fake, monkeypatch):
    k, pc = fake(own="/user.slice/x.scope", procs={"/user.slice/x.scope": [_not_ours_pid()]})
    scope = k.top / "user.slice" / "x.scope"

    def getxattr(path, attr, *a, **kw):
        if Path(path) == scope and attr == "trusted.delegate":
            return b"1"
        raise OSError(errno.ENODATA, "No data available")

    monkeypatch.setattr(os, "getxattr", getxattr)
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base == scope, note
    assert k.procs(scope / V2_LEAF) == [1]


def test_missing_controllers_give_a_clear_note(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    k, pc = fake(own="/", controllers=("cpu", "io"))
    version, note = iso._probe_cgroup(True, root=k.top, proc_cgroup=pc)
    assert version is None
    assert "memory, pids not available" in note and "cpu io" in note
    assert not [w for w in k.writes if w[0].endswith("subtree_control")]


def test_other_write_errors_are_reported_not_worked_around(fake, monkeypatch):
    k, pc = fake(own="/", procs={"/": [1]})
    real_write = k.write

    def ro_write(path, text):
        if path.name == "cgroup.subtree_control":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, text)

    monkeypatch.setattr(iso, "_cg_write", ro_write)
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base is None and "Read-only file system" in note
    assert k.procs(k.top) == [1] and not (k.top / V2_LEAF).exists()


def test_processes_that_keep_reappearing_end_in_a_note_not_a_loop(fake, monkeypatch):
    k, pc = fake(own="/", procs={"/": [1]})

    def respawn(d, pid):  # something (e.g. `docker exec`) keeps starting processes in the root
        if d.name == V2_LEAF:
            k.set_procs(k.top, k.procs(k.top) + [pid + 1000])

    k.on_procs_write = respawn
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base is None and "still holds processes" in note


def test_own_cgroup_outside_the_namespace_or_missing(fake, tmp_path):
    k, pc = fake(own="/../../elsewhere")
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base is None and "outside" in note
    pc.write_text("4:memory:/x\n")
    base, note = iso._enable_v2_controllers(k.top, pc)
    assert base is None and "no '0::' line" in note


# ------------------------------------------------------------------------------------------------
# CgroupSet on the stand-in v2
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def v2set(fake):
    k, pc = fake(own="/", procs={"/": []})
    (k.top / "cgroup.subtree_control").write_text("memory pids\n")
    return k, CgroupSet("v2", "plumline-9-0-aaaaaa", root=k.top, proc_cgroup=pc)


def test_create_writes_the_limits(v2set):
    _, cg = v2set
    cg.create(300 << 20, 40)
    d = cg.dirs["unified"]
    assert (d / "memory.max").read_text() == str(300 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "40"


def test_create_without_swap_accounting_and_without_controllers(fake):
    k, pc = fake(own="/", swap_file=False)
    (k.top / "cgroup.subtree_control").write_text("memory pids\n")
    cg = CgroupSet("v2", "a", root=k.top, proc_cgroup=pc)
    cg.create(1 << 26, 8)  # no memory.swap.max: fine, and no stray regular file created
    assert not (cg.dirs["unified"] / "memory.swap.max").exists()
    (k.top / "cgroup.subtree_control").write_text("\n")
    with pytest.raises(FileNotFoundError, match="memory.max"):
        CgroupSet("v2", "b", root=k.top, proc_cgroup=pc).create(1 << 26, 8)


def test_add_process_and_pids(v2set):
    k, cg = v2set
    cg.create(1 << 26, 8)
    k.set_procs(k.top, [4242])
    cg.add_process(4242)
    assert cg.procs_files() == [cg.dirs["unified"] / "cgroup.procs"]
    assert cg.pids() == [4242] and k.procs(k.top) == []


def test_oom_kills_and_cpu_seconds_parse(v2set):
    _, cg = v2set
    cg.create(1 << 26, 8)
    d = cg.dirs["unified"]
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n")
    (d / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cg.oom_kills() == 2 and cg.cpu_seconds() == 1.5
    (d / "memory.events").write_text("oom_kill banana\n")
    (d / "cpu.stat").write_text("usage_usec\n")
    assert cg.oom_kills() == 0 and cg.cpu_seconds() is None
    shutil.rmtree(d)
    assert cg.oom_kills() == 0 and cg.cpu_seconds() is None and cg.pids() == []


def test_kill_all_uses_cgroup_kill_when_present(v2set):
    k, cg = v2set
    cg.create(1 << 26, 8)
    k.set_procs(cg.dirs["unified"], [4242, 4243])
    cg.kill_all()
    assert k.killed == ["plumline-9-0-aaaaaa"]
    assert not [w for w in k.writes if w[0].endswith("cgroup.freeze")]
    assert cg.pids() == []


def test_kill_all_without_cgroup_kill_freezes_kills_and_thaws(fake):
    k, pc = fake(own="/", kill_file=False)
    (k.top / "cgroup.subtree_control").write_text("memory pids\n")
    cg = CgroupSet("v2", "s", root=k.top, proc_cgroup=pc)
    cg.create(1 << 26, 8)
    victim = subprocess.Popen(["sleep", "30"])
    try:
        k.set_procs(cg.dirs["unified"], [victim.pid])  # stand-in membership; the SIGKILL is real
        cg.kill_all()
        assert victim.wait(timeout=5) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.wait()
    freezes = [t for p, t in k.writes if p.endswith("cgroup.freeze")]
    assert freezes[0] == "1" and freezes[-1] == "0"
    assert "frozen 0" in (cg.dirs["unified"] / "cgroup.events").read_text()


def test_remove_retries_while_the_group_is_still_busy(v2set):
    k, cg = v2set
    cg.create(1 << 26, 8)
    k.rmdir_busy[cg.dirs["unified"]] = 5  # tasks still exiting after the kill
    cg.remove()
    assert not cg.dirs["unified"].exists()
    cg.remove()  # idempotent


def test_unknown_version_is_rejected():
    with pytest.raises(ValueError, match="v3"):
        CgroupSet("v3", "x")


# ------------------------------------------------------------------------------------------------
# The stale sweep
# ------------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_owner_names():
    assert iso._stale_owner("plumline-123-0-abcdef") == 123
    assert iso._stale_owner("plumline-probe-77-abcdef") == 77
    for name in (V2_LEAF, "plumline-", "plumline-x-1-2", "other-1-2-3", "plumline-probe-x-1"):
        assert iso._stale_owner(name) is None


def test_sweep_covers_v2_and_never_touches_the_leaf(fake):
    dead = _dead_pid()
    k, pc = fake(own=f"/{V2_LEAF}", procs={"/": [], f"/{V2_LEAF}": [os.getpid()]})
    (k.top / "cgroup.subtree_control").write_text("memory pids\n")
    names = {"stale": f"plumline-{dead}-0-aaaaaa", "probe": f"plumline-probe-{dead}-bbbbbb",
             "busy": f"plumline-{dead}-1-cccccc", "alive": f"plumline-{os.getpid()}-0-dddddd"}
    for n in names.values():
        k.mkdir(k.top / n)
    k.set_procs(k.top / names["busy"], [4242])
    k.set_procs(k.top / V2_LEAF, [])  # even an empty leaf is not swept
    assert iso.sweep_stale_cgroups(root=k.top, proc_cgroup=pc) == 2
    assert not (k.top / names["stale"]).exists() and not (k.top / names["probe"]).exists()
    assert (k.top / names["busy"]).exists() and (k.top / names["alive"]).exists()
    assert (k.top / V2_LEAF).exists()


# ------------------------------------------------------------------------------------------------
# Real cgroup v1 (this machine)
# ------------------------------------------------------------------------------------------------
def _v1_usable() -> bool:
    r = iso.CGROUP_ROOT
    return (os.geteuid() == 0 and not (r / "cgroup.controllers").exists()
            and (r / "memory").is_dir() and (r / "pids").is_dir())


def _gated_family() -> subprocess.Popen:
    """A shell that forks two sleeps only after it got a line on stdin (i.e. after it was moved)."""
    return subprocess.Popen(["sh", "-c", "read -r _; sleep 30 & sleep 30 & wait"], stdin=subprocess.PIPE)


def _wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.skipif(not _v1_usable(), reason="needs root and cgroup v1 memory+pids")
def test_real_v1_slot_holds_kills_and_removes_a_process_family():
    cg = CgroupSet("v1", f"plumline-{os.getpid()}-99-{uuid.uuid4().hex[:6]}")
    cg.create(128 << 20, 16)
    fam = _gated_family()
    try:
        assert (cg.dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
        assert (cg.dirs["pids"] / "pids.max").read_text().strip() == "16"
        cg.add_process(fam.pid)
        fam.stdin.write(b"go\n")
        fam.stdin.flush()
        assert _wait_for(lambda: len(cg.pids()) == 3), cg.pids()
        assert fam.pid in cg.pids()
        assert cg.dirs["pids"].name in Path(f"/proc/{fam.pid}/cgroup").read_text()
        assert cg.oom_kills() == 0
        cpu = cg.cpu_seconds()
        assert cpu is None or cpu >= 0.0
        cg.kill_all()
        assert fam.wait(timeout=5) == -signal.SIGKILL
        assert cg.pids() == []
        cg.remove()
        assert not any(d.exists() for d in cg.dirs.values())
    finally:
        fam.kill()
        fam.wait()
        cg.remove()


# ------------------------------------------------------------------------------------------------
# Real cgroup v2 (a cgroup2 mount; on this hybrid host it has no memory/pids)
# ------------------------------------------------------------------------------------------------
def _cgroup2_mounts() -> list[Path]:
    out = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            pre, _, post = line.partition(" - ")
            if post.split()[:1] == ["cgroup2"] and pre.split()[3] == "/":
                out.append(Path(pre.split()[4]))
    except (OSError, IndexError):
        pass
    return out


@pytest.fixture
def cgroup2():
    """A real cgroup2 mount root: an existing one, else a fresh `mount -t cgroup2` (always unmounted)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mounts = _cgroup2_mounts()
    if mounts:
        yield mounts[0]
        return
    tmp = Path(tempfile.mkdtemp(prefix="plumline-cg2-"))
    r = subprocess.run(["mount", "-t", "cgroup2", "none", str(tmp)], capture_output=True, check=False)
    if r.returncode != 0:
        tmp.rmdir()
        pytest.skip(f"cannot mount cgroup2: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield tmp
    finally:
        subprocess.run(["umount", str(tmp)], check=False)
        tmp.rmdir()


class _Cleanup:
    """Processes we started and cgroups we made: killed by pid and removed, deepest first."""

    def __init__(self):
        self.pids: list[int] = []
        self.dirs: list[Path] = []

    def run(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for d in sorted(self.dirs, key=lambda p: len(p.parts), reverse=True):
            for _ in range(200):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


@pytest.fixture
def cleanup():
    c = _Cleanup()
    yield c
    c.run()


def _test_group(mount: Path, cleanup: _Cleanup) -> tuple[Path, Path]:
    """A fresh cgroup under the mount, and a /proc/self/cgroup stand-in that puts us in it."""
    name = f"plumline-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d = mount / name
    d.mkdir()
    cleanup.dirs.append(d)
    pc = Path(tempfile.mkdtemp()) / "cgroup"
    pc.write_text(f"0::/{name}\n")
    return d, pc


def test_real_v2_probe_notes_missing_controllers(cgroup2, cleanup):
    d, pc = _test_group(cgroup2, cleanup)
    available = (d / "cgroup.controllers").read_text().split()
    if {"memory", "pids"} <= set(available):
        pytest.skip("this cgroup2 mount has memory+pids (not a hybrid host)")
    cleanup.dirs.append(d / "slot")  # create() makes the directory before it fails
    base, note = iso._enable_v2_controllers(cgroup2, pc)
    assert base is None and "not available" in note and str(d) in note
    with pytest.raises(FileNotFoundError, match="memory.max"):  # no file is ever created by mistake
        CgroupSet("v2", "slot", root=cgroup2, proc_cgroup=pc).create(1 << 26, 8)


@pytest.mark.parametrize("with_kill_file", [True, False], ids=["cgroup.kill", "freeze"])
def test_real_v2_slot_holds_kills_and_removes_a_process_family(cgroup2, cleanup, monkeypatch, with_kill_file):
    d, pc = _test_group(cgroup2, cleanup)
    cg = CgroupSet("v2", "slot", root=cgroup2, proc_cgroup=pc)
    slot = cg.dirs["unified"]
    assert slot == d / "slot"
    iso._cg_mkdir(slot)  # create() needs memory+pids, which a hybrid host's v2 lacks
    cleanup.dirs.append(slot)
    if not (slot / "cgroup.kill").exists() and with_kill_file:
        pytest.skip("kernel < 5.14: no cgroup.kill")
    if not with_kill_file:
        real_write = iso._cg_write

        def no_kill(path, text):
            if path.name == "cgroup.kill":
                raise OSError(errno.EINVAL, "Invalid argument", str(path))
            real_write(path, text)

        monkeypatch.setattr(iso, "_cg_write", no_kill)
    fam = _gated_family()
    cleanup.pids.append(fam.pid)
    cg.add_process(fam.pid)
    fam.stdin.write(b"go\n")
    fam.stdin.flush()
    assert _wait_for(lambda: len(cg.pids()) == 3), cg.pids()
    members = cg.pids()
    cleanup.pids.extend(members)
    assert f"0::/{d.name}/slot" in Path(f"/proc/{fam.pid}/cgroup").read_text()
    assert isinstance(cg.cpu_seconds(), float)
    cg.kill_all()
    assert fam.wait(timeout=5) == -signal.SIGKILL
    assert cg.pids() == []
    assert all(not Path(f"/proc/{p}").exists() or "Z" in Path(f"/proc/{p}/stat").read_text().split(")")[1][:3]
               for p in members)
    assert "frozen 0" in (slot / "cgroup.events").read_text()  # never left frozen
    cg.remove()
    assert not slot.exists()


def _domain_controller(mount: Path) -> str | None:
    """A domain controller the mount's root offers (enabling it in a populated non-root group -> EBUSY)."""
    avail = (mount / "cgroup.controllers").read_text().split()
    for c in ("hugetlb", "io", "rdma", "misc", "memory"):
        if c in avail:
            return c
    return None


@pytest.fixture
def domain_ctrl(cgroup2):
    """Enable one domain controller at the mount root (the real root is exempt from the rule) for the
    test, and disable it again afterwards if it was us who enabled it."""
    c = _domain_controller(cgroup2)
    if c is None:
        pytest.skip("no domain controller available on this cgroup2 mount")
    ctl = cgroup2 / "cgroup.subtree_control"
    was = c in ctl.read_text().split()
    if not was:
        try:
            iso._cg_write(ctl, f"+{c}")
        except OSError as exc:
            pytest.skip(f"cannot enable {c} at the cgroup2 root: {exc}")
    yield c
    if not was:
        try:
            iso._cg_write(ctl, f"-{c}")
        except OSError:
            pass


def _orphan_sleep() -> int:
    """A sleep that is NOT our descendant (its parent shell exits at once; it is reparented)."""
    out = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & echo $!"], capture_output=True,
                         check=True, timeout=10)
    return int(out.stdout)


def test_real_v2_ebusy_with_a_foreign_process_leaves_it_alone(cgroup2, domain_ctrl, cleanup):
    d, pc = _test_group(cgroup2, cleanup)
    orphan = _orphan_sleep()
    cleanup.pids.append(orphan)
    iso._cg_write(d / "cgroup.procs", str(orphan))
    base, note = iso._enable_v2_controllers(cgroup2, pc, controllers=(domain_ctrl,))
    assert base is None and "EBUSY" in note, note
    assert iso._read_pids(d / "cgroup.procs") == [orphan]
    assert not (d / V2_LEAF).exists()


def test_real_v2_ebusy_with_only_our_children_moves_them_to_the_leaf(cgroup2, domain_ctrl, cleanup):
    d, pc = _test_group(cgroup2, cleanup)
    cleanup.dirs.append(d / V2_LEAF)
    child = subprocess.Popen(["sleep", "60"])
    cleanup.pids.append(child.pid)
    iso._cg_write(d / "cgroup.procs", str(child.pid))
    try:
        base, note = iso._enable_v2_controllers(cgroup2, pc, controllers=(domain_ctrl,))
        assert base == d, note
        assert domain_ctrl in (d / "cgroup.subtree_control").read_text().split()
        assert iso._read_pids(d / V2_LEAF / "cgroup.procs") == [child.pid]
        assert iso._read_pids(d / "cgroup.procs") == []
    finally:
        child.kill()
        child.wait()
        _wait_for(lambda: not iso._read_pids(d / V2_LEAF / "cgroup.procs"))
        iso._cg_write(d / "cgroup.subtree_control", f"-{domain_ctrl}")


_NS_SCRIPT = """
import json, sys
from pathlib import Path
from plumline.sandbox import isolation as iso
base, note = iso._enable_v2_controllers(Path(sys.argv[1]), controllers=(sys.argv[2],))
print(json.dumps({"base": str(base) if base else None, "note": note,
                  "own": Path("/proc/self/cgroup").read_text()}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_real_v2_namespace_root_moves_every_process_to_the_leaf(cgroup2, domain_ctrl, cleanup):
    """Like a container with a private cgroup namespace: inside it our cgroup is "/", and even a
    process that is not ours moves into the leaf (what Docker's dind entrypoint does)."""
    d, _ = _test_group(cgroup2, cleanup)
    cleanup.dirs.append(d / V2_LEAF)
    orphan = _orphan_sleep()
    cleanup.pids.append(orphan)
    iso._cg_write(d / "cgroup.procs", str(orphan))
    # the shell joins the test group, then becomes the probe in a new cgroup namespace rooted there
    cmd = ["sh", "-c", f'echo $$ > "{d}/cgroup.procs" && exec unshare --cgroup -- "$0" -c "$1" "$2" "$3"',
           sys.executable, _NS_SCRIPT, str(d), domain_ctrl]
    r = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    if r.returncode != 0 and b"unshare failed" in r.stderr:
        pytest.skip(f"cannot create a cgroup namespace: {r.stderr.decode(errors='replace')[-200:]}")
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out["base"] == str(d), out["note"]
    assert f"0::/{V2_LEAF}" in out["own"].splitlines()  # the probe itself moved into the leaf
    assert iso._read_pids(d / V2_LEAF / "cgroup.procs") == [orphan]
    assert iso._read_pids(d / "cgroup.procs") == []
    assert domain_ctrl in (d / "cgroup.subtree_control").read_text().split()
    os.kill(orphan, signal.SIGKILL)
    assert _wait_for(lambda: not iso._read_pids(d / V2_LEAF / "cgroup.procs"))
    iso._cg_write(d / "cgroup.subtree_control", f"-{domain_ctrl}")
