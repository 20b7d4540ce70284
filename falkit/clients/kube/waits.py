"""Waits: polling until a condition holds, and saying what is waited for while it does.

- :func:`wait_for` polls a function until a predicate holds, reporting progress, and raises
  :class:`WaitTimeoutError` (never returns a falsy "timed out");
- :func:`wait_until` polls until truthy and raises the step's :class:`~falkit.model.errors.StepError`;
- :class:`WaitReporter` makes every wait say what it waits for at least every
  :data:`REPORT_EVERY_S` seconds (``$FALKIT_WAIT_REPORT_S`` overrides it), naming the objects and
  what they report — a long wait is never silent (issue 12, item 5). :func:`wait_for`,
  :func:`wait_until`, Kubernetes Job waits (:func:`falkit.clients.kube.run_job`), Argo CD sync waits
  (:func:`falkit.steps.ownership.wait_for_sync`) and Proxmox task waits (:func:`falkit.clients.proxmox.wait_task`) use it.

This module imports nothing of the ``kubernetes`` client.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ...model.errors import FalkitError, StepError

REPORT_EVERY_S = 10.0


def report_every() -> float:
    """Seconds between two lines of a wait: ``$FALKIT_WAIT_REPORT_S``, else :data:`REPORT_EVERY_S`."""
    try:
        value = float(os.environ.get("FALKIT_WAIT_REPORT_S") or REPORT_EVERY_S)
    except ValueError:
        return REPORT_EVERY_S
    return value if value > 0 else REPORT_EVERY_S


class WaitReporter:
    """Says what a wait waits for, at least every ``every`` seconds.

    ``reporter(detail, done=False)`` is called on every poll with what the waited-for objects report
    now (e.g. ``"traefik: Synced/Healthy revision 1757f84; Service traefik/traefik not yet"``).
    With a ``progress`` updater (a progress bar's ``update(fraction, message)``) it is updated on
    every poll, and its message carries the time waited, which changes once per ``every`` seconds —
    a headless :class:`falkit.ui.widgets.Progress` prints a line whenever the message changes. Without
    one, a line ``waiting for <what>: <detail> (<n> s of <timeout> s)`` is printed to ``out``
    (default stdout: the notebook's output, echoed by ``falkit run``) each ``every`` seconds.
    """

    def __init__(self, what: str, timeout: float, progress: Callable[[float, str], None] | None = None, *,
                 every: float | None = None, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.timeout = timeout
        self.progress = progress
        self.every = report_every() if every is None else every
        self.out = out
        self.clock = clock
        self.start = clock()
        self.last = self.start  # the time of the last line (the start: the first line comes after `every`)
        self.shown: str | None = None  # the time waited, as the progress message says it

    def _secs(self, seconds: float) -> str:
        return f"{seconds:.0f}" if self.every >= 1 else f"{seconds:.1f}"

    def line(self, detail: str, now: float | None = None) -> str:
        waited = (self.clock() if now is None else now) - self.start
        return f"waiting for {self.what}: {detail} ({self._secs(waited)} s of {self.timeout:g} s)"

    def __call__(self, detail: str, done: bool = False) -> None:
        now = self.clock()
        due = not done and now - self.last >= self.every
        if due:
            self.last = now
            self.shown = self._secs(now - self.start)
        if self.progress is not None:
            frac = 1.0 if done else min(0.99, (now - self.start) / self.timeout) if self.timeout else 0.0
            self.progress(frac, detail if done or self.shown is None else
                          f"{detail} (waiting {self.shown} s of {self.timeout:g} s)")
        elif due:
            print(self.line(detail, now), file=self.out or sys.stdout, flush=True)


class WaitTimeoutError(FalkitError, TimeoutError):
    """A condition did not hold before the timeout; ``last`` is the last value observed."""

    def __init__(self, what: str, timeout: float, last: Any = None):
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"{what}: not reached after {timeout:g} s")


def wait_until(step: str, what: str, timeout: float, fn: Callable[[], Any], poll: float = 0.2) -> None:
    """Poll ``fn()`` until truthy; :class:`~falkit.model.errors.StepError` of ``step`` after ``timeout``
    seconds. Exceptions from ``fn`` propagate (unlike :func:`wait_for`, which counts them as
    "not yet"). Says ``waiting for <what>`` every :func:`report_every` seconds."""
    start = time.monotonic()
    report = WaitReporter(f"{step}: {what}", timeout)
    while not fn():
        if time.monotonic() - start > timeout:
            raise StepError(step, f"{what}: not done after {timeout:g} s")
        report("not yet")
        time.sleep(poll)


def wait_for(fn: Callable[[], Any], predicate: Callable[[Any], bool], timeout: float, what: str,
             progress: Callable[[float, str], None] | None = None, describe: Callable[[Any], str] | None = None,
             poll: float = 0.2) -> Any:
    """Call ``fn`` until ``predicate(value)``; returns that value. Exceptions from ``fn`` count as
    "not yet" (the API may be coming up) and are kept as the last value for the error message.
    What it waits for is said at least every :func:`report_every` seconds (:class:`WaitReporter`),
    on ``progress`` when given, else as a printed line."""
    deadline = time.monotonic() + timeout
    report = WaitReporter(what, timeout, progress)
    last: Any = None
    while True:
        try:
            last = fn()
            done = predicate(last)
        except Exception as e:  # noqa: BLE001 - reported in WaitTimeoutError
            last, done = e, False
        report(describe(last) if describe and not isinstance(last, Exception) else ("done" if done else str(last)[:120]), done)
        if done:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(what, timeout, last)
        time.sleep(poll)
