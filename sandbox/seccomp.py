"""The seccomp filter every candidate process runs under, built once in the trusted parent with
libseccomp (via ctypes) and exported as raw BPF bytes; the in-sandbox supervisor loads those bytes
with ``prctl(PR_SET_SECCOMP)`` in each forked child, so no compiler or libseccomp is needed inside.

Default action is *allow* (Python needs a broad syscall set); the listed dangerous calls fail with
EPERM. Foreign syscall ABIs (i386, x32) are killed by libseccomp's architecture check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from functools import lru_cache

log = logging.getLogger(__name__)

SCMP_ACT_ALLOW = 0x7FFF0000


def _act_errno(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


# Syscalls no candidate needs: escaping or reconfiguring the sandbox, inspecting other processes,
# kernel attack surface (bpf, io_uring, keyrings, userfaultfd, perf), SysV IPC that would outlive a run.
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "mount", "umount2", "pivot_root", "chroot",
    "unshare", "setns", "bpf", "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "reboot", "swapon", "swapoff", "open_by_handle_at",
    "name_to_handle_at", "fanotify_init", "quotactl", "acct", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm", "vhangup", "syslog",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "shmget", "shmat", "msgget", "semget", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "lookup_dcookie", "nfsservctl", "uselib", "vm86", "vm86old", "memfd_secret", "landlock_create_ruleset",
)
_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1
F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_UNIX = 1
_LOW32 = 0xFFFFFFFF


class SeccompUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp not loadable ({name}): {exc}") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


@lru_cache(maxsize=16)
def build_filter(protected_pids: tuple[int, ...] = (1, 2)) -> bytes:
    """BPF program (array of ``struct sock_filter``, 8 bytes each) for candidate processes.

    ``protected_pids``: pids (as seen by the candidate) that it may not signal: the sandbox's init
    and the supervisor, so "kill every visible process" cannot take the supervisor down.
    Raises :class:`SeccompUnavailable` when libseccomp is missing or rejects a rule."""
    lib = _lib()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    eperm = _act_errno(errno.EPERM)

    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a syscall on this architecture
        arr = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
        if rc < 0:
            raise SeccompUnavailable(f"seccomp rule for {name} failed: {os.strerror(-rc)}")

    try:
        for name in DENIED:
            rule(eperm, name)
        rule(_act_errno(errno.ENOSYS), "clone3")  # flags live in a struct; glibc falls back to clone
        for flag in _NS_FLAGS:
            rule(eperm, "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        rule(_act_errno(errno.EAFNOSUPPORT), "socket", (0, SCMP_CMP_NE, AF_UNIX, 0))
        rule(_act_errno(errno.EAFNOSUPPORT), "socketpair", (0, SCMP_CMP_NE, AF_UNIX, 0))
        for req in (TIOCSTI, TIOCLINUX):
            rule(eperm, "ioctl", (1, SCMP_CMP_MASKED_EQ, _LOW32, req))
        rule(eperm, "prlimit64", (0, SCMP_CMP_NE, 0, 0))  # only one's own limits (and never raised)
        # no renicing / re-pinning / re-scheduling other processes (the supervisor) to starve them
        # only which=PRIO_PROCESS/IOPRIO_WHO_PROCESS: PRIO_USER with who=0 renices every process of the
        # uid, the template and the supervisor included, for the rest of the slot's life
        rule(eperm, "setpriority", (1, SCMP_CMP_NE, 0, 0))
        rule(eperm, "setpriority", (0, SCMP_CMP_NE, PRIO_PROCESS, 0))
        rule(eperm, "ioprio_set", (1, SCMP_CMP_NE, 0, 0))
        rule(eperm, "ioprio_set", (0, SCMP_CMP_NE, IOPRIO_WHO_PROCESS, 0))
        # Signals without kill(): a file owner (F_SETOWN/F_SETOWN_EX, FIOSETOWN/SIOCSPGRP on sockets)
        # with F_SETSIG and O_ASYNC makes the kernel signal any pid, e.g. SIGKILL to the supervisor.
        for cmd in (F_SETOWN, F_SETOWN_EX, F_SETSIG):
            rule(eperm, "fcntl", (1, SCMP_CMP_MASKED_EQ, _LOW32, cmd))
        for req in (FIOSETOWN, SIOCSPGRP):
            rule(eperm, "ioctl", (1, SCMP_CMP_MASKED_EQ, _LOW32, req))
        for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"):
            rule(eperm, name, (0, SCMP_CMP_NE, 0, 0))
        targets = {(-1) & _LOW32}
        for pid in protected_pids:
            targets.add(pid & _LOW32)
            targets.add((-pid) & _LOW32)
        for t in sorted(targets):
            rule(eperm, "kill", (0, SCMP_CMP_MASKED_EQ, _LOW32, t))
        for pid in protected_pids:
            rule(eperm, "tkill", (0, SCMP_CMP_MASKED_EQ, _LOW32, pid))
            rule(eperm, "tgkill", (0, SCMP_CMP_MASKED_EQ, _LOW32, pid))
            rule(eperm, "rt_sigqueueinfo", (0, SCMP_CMP_MASKED_EQ, _LOW32, pid))
            rule(eperm, "rt_tgsigqueueinfo", (0, SCMP_CMP_MASKED_EQ, _LOW32, pid))
        r, w = os.pipe()
        try:
            rc = lib.seccomp_export_bpf(ctx, w)
            os.close(w)
            w = -1
            if rc < 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            chunks = []
            while True:
                b = os.read(r, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        lib.seccomp_release(ctx)
    data = b"".join(chunks)
    if not data or len(data) % 8:
        raise SeccompUnavailable(f"exported BPF has a bad size {len(data)}")
    return data


SIGNAL_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")


def signal_syscalls() -> list[int]:
    """This architecture's numbers of the syscalls that send a signal to a pid (for the small filter a
    candidate process stacks to protect its test process); [] without libseccomp."""
    try:
        lib = _lib()
    except SeccompUnavailable:
        return []
    out = []
    for name in SIGNAL_SYSCALLS:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:
            out.append(int(nr))
    return out
