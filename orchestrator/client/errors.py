"""What the client raises: ``ClientError``, and ``Unreachable`` when the API cannot be reached."""

from __future__ import annotations


class ClientError(Exception):
    """The API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class Unreachable(ClientError):
    """No answer from the API: refused, reset, timed out, or the URL is wrong."""
