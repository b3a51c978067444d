"""What this machine allows: bubblewrap with user namespaces, cgroups (v1 or v2), seccomp.

``probe_isolation()`` runs once per process and names the *tier* recorded with every result:

- ``bwrap+cgroup+seccomp``: full isolation (the target).
- ``bwrap+seccomp``: no delegable cgroups: no per-slot memory/pids cap, no freezer; rlimits remain.
- ``bwrap``: additionally no seccomp filter (libseccomp missing).
- ``rlimits+seccomp`` / ``rlimits``: no usable bubblewrap: a plain child process with rlimits only.
  No filesystem, network or pid isolation. Warned loudly.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
INNER_PYTHON = "/usr/bin/python3"
FULL_TIER = "bwrap+cgroup+seccomp"


@dataclass(frozen=True)
class IsolationReport:
    """The isolation available here, decided once per process."""

    tier: str
    bwrap: str | None  # path of a working bubblewrap, or None
    cgroup: str | None  # "v1", "v2" or None
    seccomp: bool
    switch_uid: bool  # we are root and run every slot as its own unprivileged host uid
    python: str  # interpreter used inside the sandbox
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def full(self) -> bool:
        return self.tier == FULL_TIER


def _own_cgroup_v1(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return path
    except OSError:
        return None
    return None


def _own_cgroup_v2() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


class CgroupSet:
    """The cgroups of one slot: memory and pids caps, and a clean kill of everything inside."""

    def __init__(self, version: str, name: str):
        self.version = version
        self.dirs: dict[str, Path] = {}
        if version == "v1":
            for ctrl in ("memory", "pids", "freezer", "cpuacct"):
                if ctrl == "cpuacct" and not (CGROUP_ROOT / ctrl).is_dir():
                    continue
                own = _own_cgroup_v1(ctrl) or "/"
                self.dirs[ctrl] = CGROUP_ROOT / ctrl / own.lstrip("/") / name
        else:
            own = _own_cgroup_v2() or "/"
            self.dirs["unified"] = CGROUP_ROOT / own.lstrip("/") / name

    def create(self, memory_bytes: int, max_pids: int, uid: int | None) -> None:
        for d in self.dirs.values():
            d.mkdir(exist_ok=True)
        if self.version == "v1":
            m = self.dirs["memory"]
            (m / "memory.limit_in_bytes").write_text(str(memory_bytes))
            try:
                (m / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            except OSError:
                pass
            (self.dirs["pids"] / "pids.max").write_text(str(max_pids))
        else:
            u = self.dirs["unified"]
            (u / "memory.max").write_text(str(memory_bytes))
            try:
                (u / "memory.swap.max").write_text("0")
            except OSError:
                pass
            (u / "pids.max").write_text(str(max_pids))
        if uid is not None:
            for f in self.procs_files():
                os.chown(f, uid, uid)

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> list[int]:
        out: set[int] = set()
        for f in self.procs_files():
            try:
                out.update(int(x) for x in f.read_text().split())
            except OSError:
                pass
        return sorted(out)

    def cpu_seconds(self) -> float | None:
        """CPU time used by everything that ever ran in the slot (for benchmarks)."""
        try:
            if self.version == "v1":
                if "cpuacct" not in self.dirs:
                    return None
                return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
            for line in (self.dirs["unified"] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def oom_kills(self) -> int:
        try:
            if self.version == "v1":
                text = (self.dirs["memory"] / "memory.oom_control").read_text()
                key = "oom_kill"
            else:
                text = (self.dirs["unified"] / "memory.events").read_text()
                key = "oom_kill"
            for line in text.splitlines():
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self) -> None:
        """Freeze, SIGKILL every member, thaw: nothing can fork its way out while being killed."""
        import time

        if self.version == "v2":
            kill_file = self.dirs["unified"] / "cgroup.kill"
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                    return
                except OSError:
                    pass
        freezer = self.dirs.get("freezer")
        frozen = False
        if freezer is not None:
            try:
                (freezer / "freezer.state").write_text("FROZEN")
                frozen = True
                for _ in range(200):
                    if (freezer / "freezer.state").read_text().strip() == "FROZEN":
                        break
                    time.sleep(0.001)
            except OSError:
                frozen = False
        try:
            for _ in range(50):
                pids = self.pids()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                if frozen:  # SIGKILL is delivered once thawed; nothing can fork in between
                    (freezer / "freezer.state").write_text("THAWED")
                    frozen = False
                time.sleep(0.002)
        finally:
            if frozen:  # never leave the group frozen: a restarted slot reuses it
                try:
                    (freezer / "freezer.state").write_text("THAWED")
                except OSError:
                    pass

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    import time

                    time.sleep(0.01)


def sweep_stale_cgroups() -> int:
    """Remove empty ``plumline-<pid>-*`` cgroups left by pipeline processes that died without
    cleaning up (SIGKILL, SIGTERM). Returns how many were removed."""
    removed = 0
    roots: list[Path] = []
    for ctrl in ("memory", "pids", "freezer", "cpuacct"):
        own = _own_cgroup_v1(ctrl)
        if own is not None and (CGROUP_ROOT / ctrl).is_dir():
            roots.append(CGROUP_ROOT / ctrl / own.lstrip("/"))
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        roots.append(CGROUP_ROOT / (_own_cgroup_v2() or "/").lstrip("/"))
    for root in roots:
        try:
            entries = list(root.glob("plumline-*"))
        except OSError:
            continue
        for d in entries:
            parts = d.name.split("-")
            if len(parts) < 3 or not parts[1].isdigit() or parts[1] == "probe":
                continue
            if Path(f"/proc/{parts[1]}").exists():
                continue  # its owner is alive
            try:
                if (d / "cgroup.procs").read_text().strip():
                    continue
                d.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


def _probe_cgroup(switch_uid: bool) -> tuple[str | None, str]:
    if os.geteuid() != 0:
        return None, "not root: cgroups not delegable"
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        version = "v2"
        own = CGROUP_ROOT / (_own_cgroup_v2() or "/").lstrip("/")
        try:
            ctl = (own / "cgroup.subtree_control").read_text().split()
            if not {"memory", "pids"} <= set(ctl):
                (own / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as exc:
            return None, f"cgroup v2: cannot enable memory+pids for children of {own}: {exc}"
    elif (CGROUP_ROOT / "memory").is_dir() and (CGROUP_ROOT / "pids").is_dir():
        version = "v1"
    else:
        return None, "no cgroup memory/pids controllers mounted"
    n = sweep_stale_cgroups()
    if n:
        log.info("removed %d stale sandbox cgroups", n)
    cg = CgroupSet(version, f"plumline-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        cg.create(64 << 20, 16, 65534 if switch_uid else None)
    except OSError as exc:
        try:
            cg.remove()
        except OSError:
            pass
        return None, f"cgroup {version} not writable: {exc}"
    cg.remove()
    return version, f"cgroup {version} usable"


def _probe_bwrap(switch_uid: bool) -> tuple[str | None, str]:
    bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    if bwrap is None:
        return None, "bubblewrap not installed"
    args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop",
            "ALL", "--clearenv", *_fs_args(1 << 20), INNER_PYTHON, "-I", "-S", "-c", "print(42)"]
    kw: dict = {}
    if switch_uid:
        kw = dict(user=65533, group=65533, extra_groups=[])
    try:
        p = subprocess.run(args, capture_output=True, timeout=20, env={}, cwd="/", **kw)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"bubblewrap failed to start: {exc}"
    if p.returncode != 0 or p.stdout.strip() != b"42":
        return None, f"bubblewrap unusable (rc={p.returncode}): {p.stderr.decode(errors='replace')[:300]}"
    return bwrap, "bubblewrap with user, pid, net, ipc, uts namespaces works"


def _fs_args(tmpfs_bytes: int) -> list[str]:
    """A minimal read-only root: /usr and the usr-merge links, no /etc secrets, private tmpfs."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), f"/{name}"]
        elif p.is_dir():
            args += ["--ro-bind", str(p), f"/{name}"]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
             "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm",
             "--remount-ro", "/",  # the sandbox's root tmpfs: no writable, unwiped, uncapped space
             "--chdir", "/tmp"]
    return args


@lru_cache(maxsize=1)
def probe_isolation() -> IsolationReport:
    """Probe once per process; warn loudly on anything weaker than the full tier."""
    from .seccomp import SeccompUnavailable, build_filter

    notes: list[str] = []
    switch_uid = os.geteuid() == 0
    python = INNER_PYTHON if Path(INNER_PYTHON).exists() else None
    bwrap, note = _probe_bwrap(switch_uid) if python else (None, f"{INNER_PYTHON} missing")
    notes.append(note)
    cgroup, note = _probe_cgroup(switch_uid)
    notes.append(note)
    try:
        build_filter()
        seccomp = True
        notes.append("seccomp filter built with libseccomp")
    except SeccompUnavailable as exc:
        seccomp = False
        notes.append(str(exc))
    if bwrap:
        tier = "bwrap" + ("+cgroup" if cgroup else "") + ("+seccomp" if seccomp else "")
    else:
        tier = "rlimits" + ("+cgroup" if cgroup else "") + ("+seccomp" if seccomp else "")
    report = IsolationReport(tier=tier, bwrap=bwrap, cgroup=cgroup, seccomp=seccomp, switch_uid=switch_uid,
                             python=python or os.path.realpath(os.sys.executable), notes=tuple(notes))
    if tier != FULL_TIER:
        log.warning("SANDBOX IS WEAKER THAN FULL ISOLATION: tier %r (%s). Untrusted code may affect "
                    "this machine.", tier, "; ".join(notes))
    else:
        log.info("sandbox isolation tier %s", tier)
    return report
