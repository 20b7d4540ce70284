"""Errors by intent. Every falkit error subclasses :class:`FalkitError`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

EXCERPT_CHARS = 40


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long the whole was: an error
    message names a value, it never echoes a 5 MB one."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}… ({size})"


class FalkitError(Exception):
    """Base class of every error falkit raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a parameters file: where it is and what was expected."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class SpecError(FalkitError, ValueError):
    """The parameters file is invalid. Carries every problem found, each with file:line:column."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid parameters ({len(self.problems)} problem(s)):\n{lines}")


class ParameterError(FalkitError, ValueError):
    """A notebook/runner parameter is unknown or has the wrong type."""


DEFAULT_RESUME = ("fix the cause, then re-run the step's notebook (it is idempotent); `falkit runs` lists the "
                  "archived runs, `falkit run --resume <its directory>` continues a failed one")


def _resume_hint() -> str:
    """How to go on after a failed step: the run's own resume command inside ``falkit run``."""
    run_dir = os.environ.get("FALKIT_RUN_DIR")
    if run_dir:
        return f"fix the cause, then `falkit run --resume {run_dir}` (steps are idempotent)"
    return DEFAULT_RESUME


class StepError(FalkitError, RuntimeError):
    """A runbook step failed against the lab. Says which step, why, and how to resume."""

    def __init__(self, step: str, message: str, resume: str | None = None):
        self.step = step
        self.reason = message
        self.resume = resume or _resume_hint()
        super().__init__(f"step {step!r} failed: {message}\n  to resume: {self.resume}")


class RefusedError(StepError):
    """The plan contains a change the operator has not allowed (disruptive or destructive)."""


class TwinError(FalkitError, RuntimeError):
    """The twin could not be started, reached or controlled."""


class TargetError(FalkitError, RuntimeError):
    """The target (twin or live lab) is not configured or not reachable."""


class LockError(FalkitError, RuntimeError):
    """Another falkit run holds the lock on this lab."""
