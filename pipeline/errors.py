"""Errors that stop a round (each names the round, the stage and what a rerun does)."""


class StageFailed(RuntimeError):
    """A stage that cannot finish (the engine failed for every problem, training died): it is not
    marked done, the round stops with this message, and a rerun retries the stage."""
