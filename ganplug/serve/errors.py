"""The one exception type that becomes an HTTP error with a JSON body `{"error": ..., "code": ...}`."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After on a 429


class JobCancelled(Exception):
    """Raised inside a job at its next checkpoint after a cancel request."""
