"""Small helpers over the official ``kubernetes`` client, and the one place k8s objects are changed.

- :func:`get_or_none` reads one object through the DynamicClient (None on 404);
- :class:`KubeChanger` is *how* falkit changes a Kubernetes object: server-side apply of a dict
  (field manager ``falkit``, conflicts forced), a JSON merge patch of annotations, a delete. Steps
  take a changer instead of calling the client, so that objects Argo CD manages can later be
  changed through Git instead (issue 9) by swapping this one class;
- :func:`wait_for` polls a function until a predicate holds, reporting progress, and raises
  :class:`WaitTimeoutError` (never returns a falsy "timed out");
- :class:`WaitReporter` makes every wait say what it waits for at least every
  :data:`REPORT_EVERY_S` seconds (``$FALKIT_WAIT_REPORT_S`` overrides it), naming the objects and
  what they report — a long wait is never silent (issue 12, item 5). :func:`wait_for`,
  :func:`wait_until`, Argo CD sync waits (:func:`falkit.ownership.wait_for_sync`) and Proxmox task
  waits (:func:`falkit.proxmox.wait_task`) use it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from .errors import FalkitError

FIELD_MANAGER = "falkit"
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
    a headless :class:`falkit.widgets.Progress` prints a line whenever the message changes. Without
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


def _resource(dyn: Any, api_version: str, kind: str) -> Any:
    return dyn.resources.get(api_version=api_version, kind=kind)


def get_or_none(dyn: Any, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
    """The object as a dict, or None when it (or its kind) does not exist."""
    try:
        res = _resource(dyn, api_version, kind)
        obj = res.get(name=name, namespace=namespace) if res.namespaced else res.get(name=name)
    except (NotFoundError, ResourceNotFoundError):
        return None
    return obj.to_dict()


def list_objects(dyn: Any, api_version: str, kind: str, namespace: str | None = None) -> list[dict]:
    """Every object of a kind (all namespaces unless ``namespace``); [] when the kind is unknown."""
    try:
        res = _resource(dyn, api_version, kind)
    except ResourceNotFoundError:
        return []
    out = res.get(namespace=namespace) if namespace else res.get()
    return [i if isinstance(i, dict) else i.to_dict() for i in out.to_dict().get("items", [])] if hasattr(out, "to_dict") else []


class KubeChanger:
    """How falkit changes Kubernetes objects (see the module docstring). ``dyn`` is a DynamicClient."""

    def __init__(self, dyn: Any, field_manager: str = FIELD_MANAGER):
        self.dyn = dyn
        self.field_manager = field_manager

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (apiVersion, kind, metadata.name[, namespace] required)."""
        res = _resource(self.dyn, obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        kwargs: dict[str, Any] = {"body": obj, "name": md["name"], "field_manager": self.field_manager, "force_conflicts": True}
        if res.namespaced:
            kwargs["namespace"] = md.get("namespace", "default")
        return res.server_side_apply(**kwargs).to_dict()

    def annotate(self, api_version: str, kind: str, name: str, namespace: str | None,
                 annotations: dict[str, str | None]) -> dict[str, Any]:
        """Set annotations; a value of None removes the key (JSON merge patch)."""
        res = _resource(self.dyn, api_version, kind)
        body = {"metadata": {"annotations": annotations}}
        return res.patch(body=body, name=name, namespace=namespace, content_type="application/merge-patch+json",
                         field_manager=self.field_manager).to_dict()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            res = _resource(self.dyn, api_version, kind)
            res.delete(name=name, namespace=namespace) if res.namespaced else res.delete(name=name)
        except (NotFoundError, ResourceNotFoundError):
            return False
        return True


def wait_until(step: str, what: str, timeout: float, fn: Callable[[], Any], poll: float = 0.2) -> None:
    """Poll ``fn()`` until truthy; :class:`~falkit.errors.StepError` of ``step`` after ``timeout``
    seconds. Exceptions from ``fn`` propagate (unlike :func:`wait_for`, which counts them as
    "not yet"). Says ``waiting for <what>`` every :func:`report_every` seconds."""
    from .errors import StepError

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
