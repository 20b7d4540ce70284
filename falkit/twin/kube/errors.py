"""API errors as ``Status`` objects.

Per the API conventions ("Response Status Kind"), every failure is a ``v1 Status`` with
``status: Failure``, a machine-readable ``reason`` (NotFound, AlreadyExists, Conflict, Invalid,
Gone, BadRequest, MethodNotAllowed, ...), the HTTP ``code`` and ``details`` (name, group, kind,
and for 422 Invalid a list of ``causes`` with ``field`` paths). Messages follow the apiserver's
wording so clients that match on them keep working.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as a ``Status``; raised by the store, rendered by the server."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict:
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            st["details"] = self.details
        return st


def _details(rt, name: str, **extra) -> dict:
    d = {"name": name, "group": rt.group, "kind": rt.plural} if rt else {"name": name}
    d.update(extra)
    return d


def not_found(rt, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.describe()} "{name}" not found', details=_details(rt, name))


def already_exists(rt, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.describe()} "{name}" already exists',
                    details=_details(rt, name))


def conflict(rt, name: str, why: str = "the object has been modified; please apply your changes "
                                        "to the latest version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.describe()} "{name}": {why}',
                    details=_details(rt, name))


def invalid(rt, name: str, causes: list[dict]) -> ApiError:
    """422 Invalid; ``causes`` are ``{"reason", "message", "field"}`` dicts."""
    parts = "; ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    kind = rt.kind if rt else "object"
    d = {"name": name, "group": rt.group if rt else "", "kind": kind, "causes": causes}
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {parts}', details=d)


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict:
    return {"reason": reason, "message": message, "field": field}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource"):
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                    f'accepted media types include: application/json-patch+json, '
                    f'application/merge-patch+json, application/apply-patch+yaml (got "{content_type}")')


def forbidden(rt, name: str, message: str) -> ApiError:
    return ApiError(403, "Forbidden", message, details=_details(rt, name))
