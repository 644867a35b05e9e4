"""Errors a handler raises to fail its attempt, and errors of the client itself."""

from typing import Optional


class TaskError(Exception):
    """Base of the errors a handler raises on purpose to fail its attempt.

    ``retryable`` tells the node whether another attempt can help. Raise
    :class:`Retryable` or :class:`Permanent` rather than this class directly.
    """

    retryable: bool = True

    def __init__(self, message: str, retryable: Optional[bool] = None) -> None:
        super().__init__(message)
        self.message = str(message)
        if retryable is not None:
            self.retryable = retryable


class Retryable(TaskError):
    """The attempt failed, but another attempt may succeed (e.g. a flaky dependency)."""

    retryable = True


class Permanent(TaskError):
    """The attempt failed and retrying cannot help (e.g. invalid params)."""

    retryable = False


class ClientError(Exception):
    """Base of the errors raised by the client itself (not by handlers)."""


class Unreachable(ClientError):
    """The node could not be reached, or the connection failed mid-request."""


class ApiError(ClientError):
    """The node answered with an unexpected HTTP status.

    ``code``, ``message`` and ``request_id`` come from the node's
    ``{"error": {...}}`` body when it has one.
    """

    def __init__(
        self,
        status: int,
        code: Optional[str] = None,
        message: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message or ''}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class RegistrationRejected(ClientError):
    """The node refused to register this worker (e.g. a kind that is not external).

    Retrying cannot help: :meth:`Worker.run` raises it after shutting down.
    """
