"""The context a handler receives with its params."""

from typing import Optional

from .leases import Lease, LeaseTable


class TaskContext:
    """What a handler knows about its attempt, and how it reports progress.

    ``cancelled`` and ``lease_lost`` change while the handler runs (from the
    heartbeat thread): a long handler should look at them now and then.
    """

    def __init__(self, lease: Lease, table: LeaseTable) -> None:
        self._lease = lease
        self._table = table

    def __repr__(self) -> str:
        return f"TaskContext(id={self.id!r}, kind={self.kind!r}, attempt={self.attempt})"

    @property
    def id(self) -> str:
        """The task id."""
        return self._lease.id

    @property
    def kind(self) -> str:
        """The task kind."""
        return self._lease.kind

    @property
    def attempt(self) -> int:
        """The attempt number, 1 for the first attempt."""
        return self._lease.attempt

    @property
    def timeout_ms(self) -> Optional[int]:
        """The task's hard time limit in milliseconds, if it has one."""
        return self._lease.timeout_ms

    @property
    def cancelled(self) -> bool:
        """True once the node asked to cancel the task, or the lease was lost.

        A handler that sees it should return soon; what it returns is still
        reported while the lease is valid (the node records the cancel).
        """
        return self._lease.cancelled

    @property
    def lease_lost(self) -> bool:
        """True once the lease is lost: nothing this attempt returns will be reported."""
        return self._lease.lost

    def progress(self, fraction: float, message: Optional[str] = None) -> None:
        """Record progress (``fraction`` clamped to [0, 1]); the next heartbeat sends it."""
        self._table.set_progress(self._lease, float(fraction), message)
