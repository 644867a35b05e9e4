"""The worker's registration on a node, renewed when the node forgets it."""

import logging
import threading
from typing import Any, Dict, Optional

from .errors import RegistrationRejected
from .http import NodeClient
from .leases import LeaseTable

log = logging.getLogger("taskmesh_worker")

# A node answering one of these to a registration will answer it again: give up.
_FATAL_STATUSES = (400, 401, 403, 422)


class Session:
    """One registration: the node's worker id and its timing.

    ``epoch`` numbers registrations of this process (1, 2, ...); a lease belongs
    to the registration that granted it and dies with it.
    """

    def __init__(self, worker_id: str, epoch: int, lease_ms: int, heartbeat_ms: int) -> None:
        self.worker_id = worker_id
        self.epoch = epoch
        self.lease_ms = lease_ms
        self.heartbeat_ms = heartbeat_ms

    def path(self, suffix: str = "") -> str:
        """The API path of this worker, with ``suffix`` (e.g. ``"/poll"``)."""
        return f"/v1/workers/{self.worker_id}{suffix}"


class Registration:
    """The current :class:`Session`, if any; shared by all the worker's threads."""

    def __init__(self, client: NodeClient, table: LeaseTable, body: Dict[str, Any]) -> None:
        self._client = client
        self._table = table
        self._body = body
        self._lock = threading.Lock()
        self._current: Optional[Session] = None
        self._epoch = 0
        self.registrations = 0

    @property
    def current(self) -> Optional[Session]:
        """The valid session, or ``None`` while the worker is not registered."""
        with self._lock:
            return self._current

    def register(self) -> Session:
        """Register on the client's current node and make that the current session.

        Raises :class:`Unreachable`, :class:`ApiError` (worth retrying) or
        :class:`RegistrationRejected` (not worth retrying).
        """
        resp = self._client.call("POST", "/v1/workers", self._body)
        if resp.status in _FATAL_STATUSES:
            raise RegistrationRejected(str(resp.error()))
        if resp.status not in (200, 201) or not isinstance(resp.body, dict):
            raise resp.error()
        body = resp.body
        lease_ms = int(body.get("lease_ms") or 10000)
        # Heartbeat at the node's pace, but never too rarely for the lease to survive.
        heartbeat_ms = int(body.get("heartbeat_ms") or lease_ms // 5)
        heartbeat_ms = max(1, min(heartbeat_ms, lease_ms // 2 or 1))
        with self._lock:
            self._epoch += 1
            self.registrations += 1
            self._current = Session(str(body["worker_id"]), self._epoch, lease_ms, heartbeat_ms)
            session = self._current
        log.info("registered on %s as worker %s", self._client.url, session.worker_id)
        return session

    def invalidate(self, session: Session, reason: str) -> None:
        """The node no longer knows ``session`` (or is gone): void its leases.

        Does nothing if ``session`` was already replaced.
        """
        with self._lock:
            if self._current is not session:
                return
            self._current = None
        voided = self._table.void_before(session.epoch + 1)
        log.warning(
            "worker %s is no longer registered (%s); %d lease(s) void",
            session.worker_id,
            reason,
            len(voided),
        )

    def leave(self) -> None:
        """Forget the current session without voiding (the caller voids all leases)."""
        with self._lock:
            self._current = None
