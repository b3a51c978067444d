"""Errors that stop a round (each names the round, the stage and what a rerun does)."""

import errno
import os


class StageFailed(RuntimeError):
    """A stage that cannot finish (the engine failed for every problem, training died): it is not
    marked done, the round stops with this message, and a rerun retries the stage."""


class BadRunInput(StageFailed):
    """The round's input cannot work (a policy model path that does not exist, no problems left to
    read): nothing is retried until the input changes. ``plumline eval`` exits 2 on it."""


class RunFolderError(StageFailed):
    """The run folder cannot be written (disk full, read-only, permissions): nothing half-written is
    marked done, and a rerun after the cause is fixed resumes."""


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}
# Beam re-raises a worker's OSError as a RuntimeError holding only its text: these are the strerror
# texts of the errnos above, the one trace left of the cause.
_STORAGE_TEXTS = tuple(os.strerror(e) for e in _STORAGE_ERRNOS)


def storage_problem(exc: BaseException) -> str | None:
    """Why ``exc`` (or an exception it was raised from) is a storage failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            return f"{current.strerror}: {current.filename or ''}".rstrip(": ")
        text = str(current)
        for known in _STORAGE_TEXTS:
            if known in text:
                return known
        current = current.__cause__ or current.__context__
    return None
