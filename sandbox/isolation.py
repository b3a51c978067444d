"""What this machine allows: bubblewrap with user namespaces, cgroups (v1 or v2), seccomp.

``probe_isolation()`` runs once per process and names the *tier* recorded with every result:

- ``bwrap+cgroup+seccomp``: full isolation (the target).
- ``bwrap+seccomp``: no delegable cgroups: no per-slot memory/pids cap, no freezer; rlimits remain.
- ``bwrap``: additionally no seccomp filter (libseccomp missing).
- ``rlimits+seccomp`` / ``rlimits``: no usable bubblewrap: a plain child process with rlimits only.
  No filesystem, network or pid isolation. Warned loudly.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V2_LEAF = "plumline-leaf"  # where the probe moves the processes of our v2 cgroup (no internal processes)
V2_CONTROLLERS = ("memory", "pids")
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


# -- cgroups ---------------------------------------------------------------------------------------
# Every cgroupfs mutation goes through the three helpers below: each write is one write(2) (the kernel
# parses every write as one command: a pid, "+memory +pids", "1"), files are never created (a missing
# interface file is an error, not a new regular file), and the tests' stand-in kernel replaces exactly
# these three functions.


def _cg_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _cg_mkdir(path: Path) -> None:
    path.mkdir(exist_ok=True)


def _cg_rmdir(path: Path) -> None:
    path.rmdir()


def _read_pids(path: Path) -> list[int]:
    """The pids listed in a ``cgroup.procs`` file (empty when it is gone)."""
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _own_cgroup_v1(controller: str, proc_cgroup: Path | None = None) -> str | None:
    try:
        for line in (proc_cgroup or PROC_SELF_CGROUP).read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return path
    except (OSError, ValueError):
        return None
    return None


def _own_cgroup_v2(proc_cgroup: Path | None = None) -> str | None:
    """Our cgroup v2 path ("0::/path"), relative to our cgroup namespace's root."""
    try:
        for line in (proc_cgroup or PROC_SELF_CGROUP).read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


def _v2_base_rel(proc_cgroup: Path | None = None) -> str:
    """The cgroup (relative to the namespace root) under which slot cgroups go: our own, or its parent
    when we sit in the ``plumline-leaf`` the probe moved us into (the parent is where the probe enabled
    the controllers; processes started later, e.g. workers, inherit the leaf)."""
    own = (_own_cgroup_v2(proc_cgroup) or "/").rstrip("/") or "/"
    if own.rsplit("/", 1)[-1] == V2_LEAF:
        own = own.rsplit("/", 1)[0] or "/"
    return own


def _v2_base(root: Path | None = None, proc_cgroup: Path | None = None) -> Path:
    return (root or CGROUP_ROOT) / _v2_base_rel(proc_cgroup).lstrip("/")


class CgroupSet:
    """The cgroups of one slot: memory and pids caps, and a clean kill of everything inside.

    ``root`` (the cgroupfs mount) and ``proc_cgroup`` (our /proc/self/cgroup) default to the real
    ones; tests point them at a stand-in."""

    def __init__(self, version: str, name: str, *, root: Path | None = None, proc_cgroup: Path | None = None):
        root = root or CGROUP_ROOT
        self.version = version
        self.dirs: dict[str, Path] = {}
        if version == "v1":
            for ctrl in ("memory", "pids", "freezer", "cpuacct"):
                if ctrl == "cpuacct" and not (root / ctrl).is_dir():
                    continue
                own = _own_cgroup_v1(ctrl, proc_cgroup) or "/"
                self.dirs[ctrl] = root / ctrl / own.lstrip("/") / name
        elif version == "v2":
            self.dirs["unified"] = _v2_base(root, proc_cgroup) / name
        else:
            raise ValueError(f"cgroup version must be 'v1' or 'v2', got {version!r}")

    def create(self, memory_bytes: int, max_pids: int) -> None:
        for d in self.dirs.values():
            _cg_mkdir(d)
        if self.version == "v1":
            m = self.dirs["memory"]
            _cg_write(m / "memory.limit_in_bytes", str(memory_bytes))
            try:
                _cg_write(m / "memory.memsw.limit_in_bytes", str(memory_bytes))
            except OSError:
                pass
            _cg_write(self.dirs["pids"] / "pids.max", str(max_pids))
        else:
            u = self.dirs["unified"]
            _cg_write(u / "memory.max", str(memory_bytes))
            if (u / "memory.swap.max").exists():  # absent without swap accounting
                try:
                    _cg_write(u / "memory.swap.max", "0")
                except OSError:
                    pass
            _cg_write(u / "pids.max", str(max_pids))

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def add_process(self, pid: int) -> None:
        """Move ``pid`` into every cgroup of the set. Done by the (root) parent, not by the slot's own
        unprivileged process: cgroup v2 lets a process move only with write access to the common
        ancestor's ``cgroup.procs``, which an unprivileged slot uid does not have."""
        for f in self.procs_files():
            _cg_write(f, str(pid))

    def pids(self) -> list[int]:
        out: set[int] = set()
        for f in self.procs_files():
            out.update(_read_pids(f))
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
        except (OSError, ValueError, IndexError):
            return None
        return None

    def oom_kills(self) -> int:
        """The OOM killer's kills in this slot so far (v1: memory.oom_control, v2: memory.events)."""
        f = self.dirs["memory"] / "memory.oom_control" if self.version == "v1" else \
            self.dirs["unified"] / "memory.events"
        try:
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def _freeze(self) -> bool:
        """Freeze the slot (v1 freezer.state, v2 cgroup.freeze) and wait briefly until it is frozen."""
        if self.version == "v1":
            d = self.dirs.get("freezer")
            if d is None:
                return False
            ctl, state, want = d / "freezer.state", d / "freezer.state", "FROZEN"
            value = "FROZEN"
        else:
            d = self.dirs["unified"]
            ctl, state, want = d / "cgroup.freeze", d / "cgroup.events", "frozen 1"
            value = "1"
        try:
            _cg_write(ctl, value)
        except OSError:
            return False
        for _ in range(200):
            try:
                text = state.read_text()
            except OSError:
                break
            if want in text.splitlines() or text.strip() == want:
                break
            time.sleep(0.001)
        return True  # even if not yet fully frozen: the kill loop below still repeats until empty

    def _thaw(self) -> None:
        try:
            if self.version == "v1":
                _cg_write(self.dirs["freezer"] / "freezer.state", "THAWED")
            else:
                _cg_write(self.dirs["unified"] / "cgroup.freeze", "0")
        except OSError:
            pass

    def _wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def kill_all(self) -> None:
        """Kill everything in the slot so that nothing can fork its way out while being killed:
        v2 with ``cgroup.kill`` (Linux >= 5.14) kills the whole group atomically; otherwise freeze,
        SIGKILL every member, thaw (frozen tasks still die of SIGKILL, and cannot fork meanwhile)."""
        if self.version == "v2":
            kill_file = self.dirs["unified"] / "cgroup.kill"
            if kill_file.exists():
                try:
                    _cg_write(kill_file, "1")
                    self._wait_empty(1.0)
                    return
                except OSError:
                    pass
        frozen = self._freeze()
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
                if frozen:  # SIGKILL is delivered once thawed (v1); nothing can fork in between
                    self._thaw()
                    frozen = False
                time.sleep(0.002)
        finally:
            if frozen:  # never leave the group frozen: a restarted slot reuses it
                self._thaw()

    def remove(self) -> None:
        """Kill everything inside and remove the directories; rmdir is retried for up to ~2 s because
        a killed group stays busy (EBUSY) until its last task has finished exiting."""
        self.kill_all()
        for d in self.dirs.values():
            for attempt in range(200):
                try:
                    _cg_rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if attempt == 199:
                        log.warning("cannot remove cgroup %s: %s (pids still inside: %s)", d, exc,
                                    _read_pids(d / "cgroup.procs"))
                        break
                    if attempt % 20 == 19:
                        self.kill_all()
                    time.sleep(0.01)


def _stale_owner(name: str) -> int | None:
    """The pipeline pid that owns a ``plumline-<pid>-...`` (slot) or ``plumline-probe-<pid>-...`` (probe)
    cgroup; None for anything else, in particular for ``plumline-leaf`` (live processes live there)."""
    parts = name.split("-")
    if len(parts) >= 3 and parts[0] == "plumline" and parts[1].isdigit():
        return int(parts[1])
    if len(parts) >= 4 and parts[:2] == ["plumline", "probe"] and parts[2].isdigit():
        return int(parts[2])
    return None


def sweep_stale_cgroups(*, root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """Remove empty ``plumline-<pid>-*`` cgroups left by pipeline processes that died without
    cleaning up (SIGKILL, SIGTERM). Returns how many were removed. Cgroups that still hold processes,
    whose owner lives, and the v2 ``plumline-leaf`` are never touched."""
    root = root or CGROUP_ROOT
    removed = 0
    roots: list[Path] = []
    for ctrl in ("memory", "pids", "freezer", "cpuacct"):
        own = _own_cgroup_v1(ctrl, proc_cgroup)
        if own is not None and (root / ctrl).is_dir():
            roots.append(root / ctrl / own.lstrip("/"))
    if (root / "cgroup.controllers").exists():
        roots.append(_v2_base(root, proc_cgroup))
    for base in roots:
        try:
            entries = list(base.glob("plumline-*"))
        except OSError:
            continue
        for d in entries:
            owner = _stale_owner(d.name)
            if owner is None or Path(f"/proc/{owner}").exists():
                continue  # not ours to sweep, or its owner is alive
            try:
                if (d / "cgroup.procs").read_text().strip():
                    continue
                _cg_rmdir(d)
                removed += 1
            except OSError:
                pass
    return removed


_DELEGATE_HINT = ("run the pipeline in a cgroup delegated to it, e.g. `systemd-run --scope -p Delegate=yes "
                  "<command>` (plumline then moves its own processes into a '" + V2_LEAF + "' child), or in "
                  "a container with its own writable cgroup namespace (`docker run --cgroupns=private "
                  "--privileged`)")


def _is_ours(pid: int, me: int) -> bool:
    """Is ``pid`` this process or one of its descendants (walking the ppid chain in /proc)?"""
    for _ in range(64):
        if pid == me:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _evacuation_reason(base_rel: str, base: Path, members: list[int]) -> str | None:
    """Why we may move every process of ``base`` into its leaf child, or None when we may not.

    Allowed when ``base`` is our cgroup namespace's root (a container's own tree: what Docker's dind
    entrypoint does too), when systemd marked it delegated (``trusted.delegate``/``user.delegate`` xattr,
    systemd >= 251), or when it holds only this process and its descendants."""
    if base_rel == "/":
        return "it is the root of this cgroup namespace"
    for attr in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(base, attr).strip() in (b"1", b"yes", b"true"):
                return f"it is delegated to us ({attr})"
        except (OSError, AttributeError):
            pass
    me = os.getpid()
    if members and all(_is_ours(p, me) for p in members):
        return "it holds only this process and its children"
    return None


def _enable_v2_controllers(root: Path | None = None, proc_cgroup: Path | None = None,
                           controllers: tuple[str, ...] = V2_CONTROLLERS) -> tuple[Path | None, str]:
    """Make ``controllers`` available to children of our cgroup (the base of the slot cgroups).

    The kernel refuses (EBUSY) to enable domain controllers in ``cgroup.subtree_control`` of a
    non-root cgroup that itself holds processes (cgroup v2's no-internal-processes rule). Then, where
    allowed (see ``_evacuation_reason``), every process of the base moves into ``<base>/plumline-leaf``
    and the write is retried; elsewhere we touch no process and return (None, why + how to fix)."""
    root = root or CGROUP_ROOT
    own = _own_cgroup_v2(proc_cgroup)
    if own is None:
        return None, "cgroup v2: no '0::' line in /proc/self/cgroup"
    if own.startswith("/..") or own.endswith(" (deleted)"):
        return None, (f"cgroup v2: our cgroup {own!r} lies outside the cgroup mount's namespace; "
                      f"{_DELEGATE_HINT}")
    base_rel = _v2_base_rel(proc_cgroup)
    base = _v2_base(root, proc_cgroup)
    names = " and ".join(controllers)
    try:
        available = (base / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return None, f"cgroup v2: cannot read {base / 'cgroup.controllers'}: {exc}"
    missing = [c for c in controllers if c not in available]
    if missing:
        return None, (f"cgroup v2: controller(s) {', '.join(missing)} not available in {base} (its "
                      f"cgroup.controllers lists: {' '.join(available) or 'nothing'}): the parent cgroup "
                      "does "
                      f"not pass them down (or cgroup v1 holds them on a hybrid host); {_DELEGATE_HINT}")
    want = " ".join("+" + c for c in controllers)
    for _ in range(5):  # processes may appear between the move and the retry (e.g. `docker exec`)
        try:
            enabled = (base / "cgroup.subtree_control").read_text().split()
        except OSError as exc:
            return None, f"cgroup v2: cannot read {base / 'cgroup.subtree_control'}: {exc}"
        if all(c in enabled for c in controllers):
            return base, f"cgroup v2: {names} enabled for children of {base}"
        try:
            _cg_write(base / "cgroup.subtree_control", want)
            return base, f"cgroup v2: enabled {names} for children of {base}"
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return None, (f"cgroup v2: cannot enable {names} in {base / 'cgroup.subtree_control'}: "
                              f"{exc}; {_DELEGATE_HINT}")
        members = _read_pids(base / "cgroup.procs")
        why = _evacuation_reason(base_rel, base, members)
        if why is None:
            shown = " ".join(map(str, members[:8])) + (" ..." if len(members) > 8 else "")
            return None, (f"cgroup v2: the kernel refuses to enable {names} for children of {base} (EBUSY): "
                          f"cgroup v2's no-internal-processes rule forbids it while {base} itself holds "
                          f"processes ({len(members)}: {shown}), and plumline moves other processes only "
                          f"out of a cgroup namespace's root or a cgroup delegated to it; {_DELEGATE_HINT}")
        leaf = base / V2_LEAF
        try:
            _cg_mkdir(leaf)
        except OSError as exc:
            return None, f"cgroup v2: cannot create {leaf}: {exc}"
        moved = 0
        for pid in members:
            try:
                _cg_write(leaf / "cgroup.procs", str(pid))
                moved += 1
            except OSError:  # exited meanwhile (ESRCH), or a kernel thread (EINVAL)
                pass
        log.info("cgroup v2: moved %d of %d processes of %s into %s (%s)", moved, len(members), base, leaf,
                 why)
    return None, (f"cgroup v2: {base} still holds processes after moving them into {V2_LEAF} 5 times "
                  f"(something keeps starting processes there); {_DELEGATE_HINT}")


def _probe_cgroup(switch_uid: bool, *, root: Path | None = None,
                  proc_cgroup: Path | None = None) -> tuple[str | None, str]:
    """Which cgroup version we can use for the slots (None: none), and a note saying why."""
    root = root or CGROUP_ROOT
    if os.geteuid() != 0:
        return None, "not root: cgroups not delegable"
    if (root / "cgroup.controllers").exists():
        version = "v2"
        base, note = _enable_v2_controllers(root, proc_cgroup)
        if base is None:
            return None, note
    elif (root / "memory").is_dir() and (root / "pids").is_dir():
        version, note = "v1", ""
    else:
        return None, "no cgroup memory/pids controllers mounted"
    n = sweep_stale_cgroups(root=root, proc_cgroup=proc_cgroup)
    if n:
        log.info("removed %d stale sandbox cgroups", n)
    cg = CgroupSet(version, f"plumline-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}", root=root,
                   proc_cgroup=proc_cgroup)
    try:
        cg.create(64 << 20, 16)
    except OSError as exc:
        try:
            cg.remove()
        except OSError:
            pass
        return None, f"cgroup {version} not writable: {exc}"
    cg.remove()
    return version, f"cgroup {version} usable" + (f" ({note})" if note else "")


def _probe_bwrap(switch_uid: bool) -> tuple[str | None, str]:
    bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    if bwrap is None:
        return None, "bubblewrap not installed"
    args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop",
            "ALL", "--clearenv", *_fs_args(1 << 20), INNER_PYTHON, "-I", "-S", "-c", "print(42)"]
    kw: dict = {}
    if switch_uid:
        kw = {"user": 65533, "group": 65533, "extra_groups": []}
    # A child forked from a busy multi-threaded parent (a Beam worker with gRPC threads) can die of a
    # signal before it runs bwrap: that says nothing about bwrap, so such a start is tried again
    # rather than silently putting the whole process on a weaker tier.
    for _attempt in range(3):
        try:
            p = subprocess.run(args, capture_output=True, timeout=20, env={}, cwd="/", check=False, **kw)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"bubblewrap failed to start: {exc}"
        if p.returncode >= 0:
            break
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
    args += ["--proc", "/proc",
             # the sandbox's own namespaced sysctls (pid_max, msgmax ...) would otherwise be writable and
             # outlive a run: a channel between candidates
             "--ro-bind", "/proc/sys", "/proc/sys",
             "--dev", "/dev",
             "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
             "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm",
             "--remount-ro", "/",  # the sandbox's root tmpfs: no writable, unwiped, uncapped space
             # bwrap's /dev is a writable tmpfs too (/dev/shm, its own mount, stays rw)
             "--remount-ro", "/dev",
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
