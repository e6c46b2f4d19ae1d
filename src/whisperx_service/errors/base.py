"""The root of the error tree: `ServiceError` (a stable code, an HTTP status) and `all_codes`."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports with a stable code (500 `internal_error`)."""

    code: str = "internal_error"
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: HTTP headers the answer carries (e.g. `WWW-Authenticate`, `Retry-After`).
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, str]:
        """The error body: `{"code": ..., "message": ...}`."""
        return {"code": self.code, "message": self.message}


class InternalError(ServiceError):
    """Something failed that should not have; the details are in the gateway's log."""


def all_codes() -> dict[str, type[ServiceError]]:
    """Every code of the tree -> its class (the most specific class for a shared code).

    Returns:
        A dict, ordered as the classes are defined.
    """
    out: dict[str, type[ServiceError]] = {}
    stack: list[type[ServiceError]] = [ServiceError]
    while stack:
        cls = stack.pop(0)
        out[cls.code] = cls
        stack += cls.__subclasses__()
    return out
