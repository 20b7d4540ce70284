"""Fault injection for the emulator (the twin's "faults"), driven from Python.

* ``fail_next(n, status=500, path=".*", method=None, retry_after=None)``: the next ``n`` requests
  whose path matches the regex answer ``status`` (429 carries ``Retry-After``).
* ``api_down()`` / ``api_up()``: every API request answers 503 ServiceUnavailable until restored.

Paths under ``/lab`` (the lab API) are never affected, so faults can be cleared over HTTP.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .errors import ApiError

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
            502: "InternalError", 409: "Conflict"}


@dataclass
class FaultRule:
    remaining: int
    status: int
    path: re.Pattern
    method: str | None
    retry_after: int | None
    hits: int = 0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.down = False

    def fail_next(self, n: int = 1, status: int = 500, path: str = ".*", method: str | None = None,
                  retry_after: int | None = None) -> FaultRule:
        if status == 429 and retry_after is None:
            retry_after = 1
        rule = FaultRule(n, status, re.compile(path), method.upper() if method else None, retry_after)
        with self._lock:
            self.rules.append(rule)
        return rule

    def api_down(self) -> None:
        self.down = True

    def api_up(self) -> None:
        self.down = False

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
        self.down = False

    def check(self, method: str, path: str) -> ApiError | None:
        """The error to answer for this request, consuming one use of a matching rule."""
        if path.startswith("/lab"):
            return None
        if self.down:
            return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if rule.remaining > 0 and (rule.method is None or rule.method == method) \
                        and rule.path.search(path):
                    rule.remaining -= 1
                    rule.hits += 1
                    if rule.remaining == 0:
                        self.rules.remove(rule)
                    return ApiError(rule.status, _REASONS.get(rule.status, "InternalError"),
                                    f"injected fault: {rule.status}", retry_after=rule.retry_after)
        return None
