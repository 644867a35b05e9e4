"""The worker's three background loops: poll, heartbeat and report.

Each runs on its own thread and shares a :class:`Runtime` with the others. No
loop ever runs on a handler's thread, and no handler runs on a loop's thread.
"""

import logging
import threading
from typing import Any, Callable, Dict, List, Optional

from .errors import ApiError, RegistrationRejected, Unreachable
from .http import DEFAULT_TIMEOUT_S, NodeClient
from .leases import Lease, LeaseTable
from .session import Registration, Session

log = logging.getLogger("taskmesh_worker")

#: Most results sent in one batch (the node's limit).
MAX_BATCH = 1000

TOO_LARGE = {"error": {"message": "result too large", "retryable": False}}


class Backoff:
    """0.1 s doubling to 5 s; waits on an event so that stopping cuts it short."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first, self._cap, self._next = first, cap, first

    def wait(self, event: threading.Event) -> None:
        """Wait the current delay (or until ``event`` is set), then double it."""
        event.wait(self._next)
        self._next = min(self._cap, self._next * 2)

    def reset(self) -> None:
        """Start again from the first delay."""
        self._next = self._first


class Runtime:
    """What the loops share: the client, the leases, the registration and the flags."""

    def __init__(
        self,
        client: NodeClient,
        table: LeaseTable,
        registration: Registration,
        poll_wait_ms: int,
        start_task: Callable[[Lease], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.table = table
        self.registration = registration
        self.poll_wait_ms = poll_wait_ms
        self.start_task = start_task
        self.fail = fail
        #: Set by stop(): no more polls, no more registrations.
        self.stopping = threading.Event()
        #: Set at the very end of shutdown: heartbeats and reports end.
        self.halted = threading.Event()


def poll_loop(rt: Runtime) -> None:
    """Register when needed, and lease tasks while there are free slots."""
    backoff = Backoff()
    while not rt.stopping.is_set():
        session = rt.registration.current
        if session is None:
            try:
                session = rt.registration.register()
                backoff.reset()
            except RegistrationRejected as exc:
                log.error("registration refused: %s", exc)
                rt.fail(exc)
                return
            except Unreachable as exc:
                log.warning("cannot register: %s", exc)
                if rt.client.url_count > 1:
                    log.warning("moving to node %s", rt.client.rotate())
                backoff.wait(rt.stopping)
                continue
            except ApiError as exc:
                log.warning("cannot register: %s", exc)
                backoff.wait(rt.stopping)
                continue
        free = rt.table.wait_free(timeout=1.0)
        if free == 0 or rt.stopping.is_set():
            continue
        body = {"max": free, "wait_ms": rt.poll_wait_ms}
        timeout = rt.poll_wait_ms / 1000.0 + DEFAULT_TIMEOUT_S
        try:
            resp = rt.client.call("POST", session.path("/poll"), body, timeout, abortable=True)
        except Unreachable as exc:
            if rt.stopping.is_set():
                return
            log.warning("poll failed: %s", exc)
            if rt.client.url_count > 1:
                rt.registration.invalidate(session, "node unreachable")
                log.warning("moving to node %s", rt.client.rotate())
            backoff.wait(rt.stopping)
            continue
        if resp.status == 404:
            rt.registration.invalidate(session, "poll answered 404")
            continue
        tasks = resp.body.get("tasks") if isinstance(resp.body, dict) else None
        if resp.status != 200 or not isinstance(tasks, list):
            log.warning("poll answered %s", resp.error())
            backoff.wait(rt.stopping)
            continue
        backoff.reset()
        for task in tasks:
            _accept(rt, session, task)


def _accept(rt: Runtime, session: Session, task: Any) -> None:
    try:
        lease = Lease(task, session.epoch)
    except (KeyError, TypeError, ValueError):
        log.error("poll answer has a malformed task: %r", task)
        return
    if rt.registration.current is not session:
        log.warning("task %s leased by a registration that is gone: ignored", lease.id)
    elif rt.stopping.is_set():
        # Held (and heartbeated) but not started: the DELETE at shutdown returns it.
        rt.table.add(lease, running=False)
    else:
        rt.table.add(lease, running=True)
        rt.start_task(lease)


def heartbeat_loop(rt: Runtime) -> None:
    """Every ``heartbeat_ms``, send the tokens held and apply the node's answer."""
    interval = 0.5
    while not rt.halted.wait(interval):
        session = rt.registration.current
        if session is None:
            interval = 0.05
            continue
        interval = session.heartbeat_ms / 1000.0
        tokens, progress = rt.table.heartbeat_payload(session.epoch)
        body: Dict[str, Any] = {"tokens": tokens}
        if progress:
            body["progress"] = {token: p for token, (_, p) in progress.items()}
        try:
            resp = rt.client.call("POST", session.path("/heartbeat"), body)
        except Unreachable as exc:
            log.warning("heartbeat failed: %s", exc)
            continue
        if resp.status == 404:
            rt.registration.invalidate(session, "heartbeat answered 404")
            continue
        leases = resp.body.get("leases") if isinstance(resp.body, dict) else None
        if resp.status != 200 or not isinstance(leases, list):
            log.warning("heartbeat answered %s", resp.error())
            continue
        rt.table.progress_delivered(progress)
        for lease in rt.table.apply_states(leases):
            log.warning("lease of task %s is stale: its result will not be reported", lease.id)


def report_loop(rt: Runtime) -> None:
    """Send every pending outcome in batches until the worker halts."""
    backoff = Backoff()
    limit = MAX_BATCH
    while not rt.halted.is_set():
        batch = rt.table.take_pending(limit, timeout=0.2)
        if not batch:
            continue
        session = rt.registration.current
        live = [l for l in batch if session is not None and l.epoch == session.epoch]
        for lease in batch:
            if session is None or lease.epoch != session.epoch:
                rt.table.retry(lease)  # lost with its registration: dropped
        if session is None or not live:
            rt.halted.wait(0.05)
            continue
        results = [dict(id=l.id, token=l.token, **(l.outcome or {})) for l in live]
        try:
            resp = rt.client.call("POST", session.path("/results"), {"results": results})
        except Unreachable as exc:
            log.warning("sending %d result(s) failed: %s", len(live), exc)
            _retry_all(rt.table, live)
            backoff.wait(rt.halted)
            continue
        if resp.status == 404:
            _retry_all(rt.table, live)
            rt.registration.invalidate(session, "results answered 404")
        elif resp.status == 413 and len(live) > 1:
            limit = max(1, len(live) // 2)
            _retry_all(rt.table, live)
        elif resp.status == 413:
            _too_large(rt.table, live[0])
        elif resp.status == 200 and isinstance(resp.body, dict):
            backoff.reset()
            limit = MAX_BATCH
            if _apply_outcomes(rt.table, live, resp.body.get("results")):
                backoff.wait(rt.halted)
        elif resp.status >= 500:
            log.warning("sending results answered %s", resp.error())
            _retry_all(rt.table, live)
            backoff.wait(rt.halted)
        else:
            # Sending the same batch again cannot help: drop it. The leases are no
            # longer heartbeated, so the node expires them and retries the tasks.
            log.error("results refused (%s): %d result(s) dropped", resp.error(), len(live))
            rt.table.settle(*live)


def _retry_all(table: LeaseTable, leases: List[Lease]) -> None:
    for lease in leases:
        table.retry(lease)


def _too_large(table: LeaseTable, lease: Lease) -> None:
    if lease.outcome == TOO_LARGE:
        log.error("task %s: even the 'result too large' failure is refused", lease.id)
        table.settle(lease)
    else:
        log.warning("task %s: result too large, reporting a permanent failure", lease.id)
        table.retry(lease, TOO_LARGE)


def _apply_outcomes(table: LeaseTable, leases: List[Lease], answers: Optional[Any]) -> bool:
    """Settle each lease by its answer; return whether some answer made no sense."""
    confused, settled = False, []
    answers = answers if isinstance(answers, list) else []
    for i, lease in enumerate(leases):
        answer = answers[i] if i < len(answers) and isinstance(answers[i], dict) else {}
        outcome = answer.get("outcome")
        if outcome == "too_large":
            _too_large(table, lease)
        elif outcome in ("recorded", "stale_token", "already_terminal", "not_found"):
            if outcome != "recorded":
                log.info("task %s: result not recorded (%s)", lease.id, outcome)
            elif answer.get("will_retry"):
                log.info("task %s: attempt %d failed, the node retries it", lease.id, lease.attempt)
            settled.append(lease)
        elif outcome == "invalid":
            # Sending the same report again cannot change the answer: drop it. The node's
            # lease ends on its own (expiry or timeout) and the attempt is retried there.
            log.error("task %s: the node refused the report as invalid: %s", lease.id,
                      answer.get("message"))
            settled.append(lease)
        else:
            log.warning("task %s: unexpected answer %r, sending again", lease.id, answer)
            table.retry(lease)
            confused = True
    table.settle(*settled)
    return confused
