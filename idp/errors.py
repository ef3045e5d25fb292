"""One error base for the whole service.

Every error carries a machine ``code`` and an HTTP ``status``; the Flask layer renders it as
``{"error": code, "message": sentence}`` for APIs or as a page for browsers. Domain errors live with
their domain and subclass :class:`IdpError`.
"""

from __future__ import annotations


class IdpError(Exception):
    code = "server_error"
    status = 500
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class ValidationError(IdpError):
    code = "invalid_request"
    status = 400
    message = "The request is malformed."


class NotFoundError(IdpError):
    code = "not_found"
    status = 404
    message = "Not found."


class ConflictError(IdpError):
    code = "conflict"
    status = 409
    message = "The resource is not in a state that allows this."


class UnavailableError(IdpError):
    """A backing service (Redis, the database) cannot be reached; the client should retry."""

    code = "service_unavailable"
    status = 503
    message = "A backing service is unavailable; retry shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
