"""The leases a worker holds, shared by its poll, handler, heartbeat and reporter threads.

A lease is held from the poll that granted it until its result is acknowledged by
the node, or until it is lost (``stale`` heartbeat answer, or the registration it
belongs to is gone). It takes a slot until its handler has also returned, so a
lost lease whose handler still runs keeps the worker from taking more work than
``slots``. Every state change happens under one condition variable.
"""

import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple


class Lease:
    """One task leased by this worker: what the node sent, and what became of it."""

    def __init__(self, task: Dict[str, Any], epoch: int) -> None:
        self.id: str = task["id"]
        self.kind: str = task["kind"]
        self.params: Any = task.get("params")
        self.attempt: int = int(task.get("attempt", 1))
        self.token: str = task["token"]
        self.timeout_ms: Optional[int] = task.get("timeout_ms")
        self.epoch = epoch
        self.running = False
        self.lost = False
        self.cancelled = False
        # The entry reported for this lease ({"result": ...} or {"error": ...}).
        self.outcome: Optional[Dict[str, Any]] = None
        self.sending = False
        self.progress: Optional[Tuple[float, Optional[str]]] = None
        self.progress_version = 0
        self.progress_sent = 0


class LeaseTable:
    """Thread-safe table of the leases held, keyed by token."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.cond = threading.Condition()
        self._leases: Dict[str, Lease] = {}

    # --- poll side -------------------------------------------------------------

    def free_slots(self) -> int:
        """Slots minus leases held (running, waiting to report, or lost but running)."""
        with self.cond:
            return max(0, self.slots - len(self._leases))

    def wait_free(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for a free slot; return the free slots."""
        with self.cond:
            self.cond.wait_for(lambda: len(self._leases) < self.slots, timeout)
            return max(0, self.slots - len(self._leases))

    def add(self, lease: Lease, running: bool = True) -> None:
        """Hold a lease just granted by a poll (``running``: its handler is starting)."""
        with self.cond:
            lease.running = running
            self._leases[lease.token] = lease
            self.cond.notify_all()

    # --- handler side ----------------------------------------------------------

    def set_progress(self, lease: Lease, fraction: float, message: Optional[str]) -> None:
        """Store a handler's latest progress; the next heartbeat sends it."""
        if math.isnan(fraction):
            fraction = 0.0
        with self.cond:
            lease.progress = (min(1.0, max(0.0, fraction)), message)
            lease.progress_version += 1

    def finish(self, lease: Lease, outcome: Dict[str, Any]) -> bool:
        """A handler returned: queue its outcome for the reporter unless the lease is lost.

        Returns whether the outcome will be reported.
        """
        with self.cond:
            lease.running = False
            if lease.lost:
                self._leases.pop(lease.token, None)
                self.cond.notify_all()
                return False
            lease.outcome = outcome
            self.cond.notify_all()
            return True

    # --- heartbeat side --------------------------------------------------------

    def heartbeat_payload(self, epoch: int) -> Tuple[List[str], Dict[str, Tuple[int, Dict[str, Any]]]]:
        """Tokens of the live leases of registration ``epoch``, and unsent progress.

        Progress maps token to (version, {"fraction", "message"}); pass it back to
        :meth:`progress_delivered` once the heartbeat was answered.
        """
        with self.cond:
            live = [l for l in self._leases.values() if not l.lost and l.epoch == epoch]
            progress = {
                l.token: (l.progress_version, {"fraction": l.progress[0], "message": l.progress[1]})
                for l in live
                if l.progress is not None and l.progress_version != l.progress_sent
            }
            return [l.token for l in live], progress

    def progress_delivered(self, delivered: Dict[str, Tuple[int, Dict[str, Any]]]) -> None:
        """Mark progress as sent (unless the handler reported newer progress since)."""
        with self.cond:
            for token, (version, _) in delivered.items():
                lease = self._leases.get(token)
                if lease is not None and lease.progress_sent < version:
                    lease.progress_sent = version

    def apply_states(self, states: List[Dict[str, Any]]) -> List[Lease]:
        """Apply a heartbeat answer; return the leases it made lost."""
        lost = []
        with self.cond:
            for entry in states:
                lease = self._leases.get(str(entry.get("token")))
                if lease is None or lease.lost:
                    continue
                state = entry.get("state")
                if state == "cancel_requested":
                    lease.cancelled = True
                elif state == "stale" and not lease.sending:
                    # (A lease whose outcome is in flight reads as stale once the node
                    # recorded it: the reporter's answer settles that lease instead.)
                    self._lose(lease)
                    lost.append(lease)
            self.cond.notify_all()
        return lost

    # --- reporter side ---------------------------------------------------------

    def take_pending(self, limit: int, timeout: float) -> List[Lease]:
        """Wait up to ``timeout`` s for outcomes to report; take up to ``limit`` of them."""
        with self.cond:
            self.cond.wait_for(self._has_pending, timeout)
            batch = [l for l in self._leases.values() if self._is_pending(l)][:limit]
            for lease in batch:
                lease.sending = True
            return batch

    def settle(self, *leases: Lease) -> None:
        """The node answered for these leases' outcomes: release them (one wake-up)."""
        with self.cond:
            for lease in leases:
                lease.sending = False
                self._leases.pop(lease.token, None)
            self.cond.notify_all()

    def retry(self, lease: Lease, outcome: Optional[Dict[str, Any]] = None) -> None:
        """Keep an outcome pending for the next batch (optionally replaced)."""
        with self.cond:
            lease.sending = False
            if lease.lost:
                self._leases.pop(lease.token, None)
            elif outcome is not None:
                lease.outcome = outcome
            self.cond.notify_all()

    # --- registration and shutdown ---------------------------------------------

    def void_before(self, epoch: int) -> List[Lease]:
        """Lose every lease granted under a registration older than ``epoch``."""
        with self.cond:
            voided = [l for l in self._leases.values() if l.epoch < epoch and not l.lost]
            for lease in voided:
                self._lose(lease)
            self.cond.notify_all()
            return voided

    def void_all(self) -> List[Lease]:
        """Lose every lease (after the worker left the node)."""
        return self.void_before(1 << 62)

    def counts(self) -> Tuple[int, int]:
        """(running handlers, outcomes not yet acknowledged)."""
        with self.cond:
            running = sum(1 for l in self._leases.values() if l.running)
            pending = sum(1 for l in self._leases.values() if l.outcome is not None)
            return running, pending

    def wait_until(self, predicate_on_counts: Callable[[int, int], bool], deadline: float) -> bool:
        """Wait until ``predicate_on_counts(running, pending)`` or the monotonic deadline."""
        with self.cond:
            while True:
                running = sum(1 for l in self._leases.values() if l.running)
                pending = sum(1 for l in self._leases.values() if l.outcome is not None)
                if predicate_on_counts(running, pending):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)

    def notify(self) -> None:
        """Wake every waiter (e.g. when the worker is stopping)."""
        with self.cond:
            self.cond.notify_all()

    def _lose(self, lease: Lease) -> None:
        lease.lost = True
        lease.cancelled = True
        lease.outcome = None
        if not lease.running and not lease.sending:
            self._leases.pop(lease.token, None)

    @staticmethod
    def _is_pending(lease: Lease) -> bool:
        return lease.outcome is not None and not lease.sending and not lease.lost

    def _has_pending(self) -> bool:
        return any(self._is_pending(l) for l in self._leases.values())
