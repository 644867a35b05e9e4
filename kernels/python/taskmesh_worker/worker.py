"""The public :class:`Worker`: register handlers, run them, stop gracefully."""

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import loops
from .context import TaskContext
from .errors import Permanent, TaskError, Unreachable
from .http import DEFAULT_TIMEOUT_S, NodeClient
from .leases import Lease, LeaseTable
from .session import Registration

log = logging.getLogger("taskmesh_worker")

#: A handler: ``handler(params, ctx) -> JSON-serializable result``.
Handler = Callable[[Any, TaskContext], Any]

# Time left to flush results after the handlers are done, if the grace period is over.
_FLUSH_S = 5.0
_MAX_POLL_WAIT_MS = 30000


def _error(message: str, retryable: bool) -> Dict[str, Any]:
    return {"error": {"message": message, "retryable": retryable}}


class Worker:
    """A worker process's connection to a taskmesh node.

    ``url`` is a node URL or a list of them (on connection errors the worker
    moves to the next one and registers there). ``slots`` handlers run at once,
    at most. ``api_key`` defaults to the ``TASKMESH_API_KEY`` environment
    variable. A worker runs once: build a new one to run again.
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]],
        slots: int = 4,
        name: Optional[str] = None,
        class_: Optional[str] = None,
        grace_s: float = 30.0,
        api_key: Optional[str] = None,
        poll_wait_ms: int = 20000,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        urls = [url] if isinstance(url, str) else list(url)
        if api_key is None:
            api_key = os.environ.get("TASKMESH_API_KEY") or None
        self.slots = slots
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.class_ = class_
        self.grace_s = grace_s
        self.poll_wait_ms = max(0, min(int(poll_wait_ms), _MAX_POLL_WAIT_MS))
        self._client = NodeClient(urls, api_key)
        self._handlers: Dict[str, Handler] = {}
        self._table = LeaseTable(slots)
        self._registration: Optional[Registration] = None
        self._runtime: Optional[loops.Runtime] = None
        self._lock = threading.Lock()
        self._ran = False
        self._stop_requested = threading.Event()
        self._stop_at: Optional[float] = None
        self._fatal: Optional[BaseException] = None
        # Set by the signal handlers, read by run(): a handler must take no lock.
        self._signalled = False

    def __repr__(self) -> str:
        return f"Worker(url={self._client.url!r}, slots={self.slots}, kinds={sorted(self._handlers)})"

    def task(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator: run the decorated function for tasks of ``kind``."""

        def register(handler: Handler) -> Handler:
            if kind in self._handlers:
                raise ValueError(f"a handler for kind {kind!r} is already registered")
            self._handlers[kind] = handler
            return handler

        return register

    @property
    def worker_id(self) -> Optional[str]:
        """The node's id for this worker while it is registered."""
        session = self._registration.current if self._registration else None
        return session.worker_id if session else None

    def stop(self) -> None:
        """Stop polling now; let running handlers finish within ``grace_s``, then leave.

        Thread-safe, returns at once; :meth:`run` returns when shutdown is over.
        Also what SIGTERM and SIGINT do while :meth:`run` runs on the main thread.
        """
        with self._lock:
            if self._stop_at is None:
                self._stop_at = time.monotonic()
            runtime = self._runtime
        self._stop_requested.set()
        if runtime is not None:
            runtime.stopping.set()
            self._client.abort()
            self._table.notify()

    def run(self) -> None:
        """Register, lease and run tasks until :meth:`stop` (or SIGTERM/SIGINT).

        Raises :class:`RegistrationRejected` if the node refuses the worker.
        """
        with self._lock:
            if self._ran:
                raise RuntimeError("a Worker runs once; create a new one")
            if not self._handlers:
                raise ValueError("no handler registered: use @worker.task(kind)")
            self._ran = True
        restore = self._install_signals()
        executor = ThreadPoolExecutor(self.slots, thread_name_prefix="taskmesh-handler")
        body: Dict[str, Any] = {"name": self.name, "kinds": sorted(self._handlers), "slots": self.slots}
        if self.class_ is not None:
            body["class"] = self.class_
        self._registration = Registration(self._client, self._table, body)

        def start_task(lease: Lease) -> None:
            executor.submit(self._execute, lease)

        rt = loops.Runtime(
            self._client, self._table, self._registration, self.poll_wait_ms, start_task, self._fail
        )
        threads = [
            threading.Thread(target=self._loop, args=(fn, rt), name=f"taskmesh-{fn.__name__}", daemon=True)
            for fn in (loops.poll_loop, loops.heartbeat_loop, loops.report_loop)
        ]
        with self._lock:
            self._runtime = rt
        try:
            for thread in threads:
                thread.start()
            if self._stop_requested.is_set():
                self.stop()
            while not rt.stopping.wait(0.25):
                if self._signalled:
                    self.stop()
            self._shutdown(rt, threads[0])
        finally:
            rt.stopping.set()
            rt.halted.set()
            self._client.abort()
            for thread in threads:
                thread.join(timeout=DEFAULT_TIMEOUT_S + 1)
            executor.shutdown(wait=False)
            self._client.close()
            restore()
        if self._fatal is not None:
            raise self._fatal

    def _shutdown(self, rt: loops.Runtime, poller: threading.Thread) -> None:
        stop_at = self._stop_at if self._stop_at is not None else time.monotonic()
        grace_deadline = stop_at + self.grace_s
        log.info("stopping: waiting up to %.1f s for running tasks", self.grace_s)
        poller.join(timeout=DEFAULT_TIMEOUT_S + 1)
        done = self._table.wait_until(lambda running, _: running == 0, grace_deadline)
        if not done:
            running, _ = self._table.counts()
            log.warning("grace period over: %d task(s) still running are abandoned", running)
        flush_deadline = max(grace_deadline, time.monotonic() + _FLUSH_S)
        if not self._table.wait_until(lambda _, pending: pending == 0, flush_deadline):
            log.warning("could not report every result before leaving")
        assert self._registration is not None
        session = self._registration.current
        self._registration.leave()
        self._table.void_all()
        if session is not None:
            try:
                resp = self._client.call("DELETE", session.path())
                if resp.status not in (200, 204, 404):
                    log.warning("leaving the node answered %s", resp.error())
            except Unreachable as exc:
                log.warning("could not leave the node: %s", exc)
        log.info("stopped")

    def _loop(self, fn: Callable[[loops.Runtime], None], rt: loops.Runtime) -> None:
        try:
            fn(rt)
        except BaseException as exc:  # a bug: stop the worker rather than hang
            log.exception("%s crashed", fn.__name__)
            self._fail(exc)
        finally:
            self._client.close()

    def _fail(self, exc: BaseException) -> None:
        self._fatal = exc
        self.stop()

    def _execute(self, lease: Lease) -> None:
        ctx = TaskContext(lease, self._table)
        handler = self._handlers.get(lease.kind)
        try:
            if handler is None:
                raise Permanent(f"this worker has no handler for kind {lease.kind!r}")
            value = handler(lease.params, ctx)
            try:
                json.dumps(value, allow_nan=False)
                outcome: Dict[str, Any] = {"result": value}
            except (TypeError, ValueError) as exc:
                outcome = _error(f"result is not JSON-serializable: {exc}", False)
        except TaskError as exc:
            outcome = _error(exc.message, exc.retryable)
        except BaseException as exc:  # noqa: B902 - any failure fails the attempt
            log.exception("task %s (%s) attempt %d raised", lease.id, lease.kind, lease.attempt)
            outcome = _error(f"{type(exc).__name__}: {exc}", True)
        if not self._table.finish(lease, outcome):
            log.info("task %s: lease lost, its outcome is not reported", lease.id)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Runs between two bytecodes of the main thread, maybe while it holds a
        # lock: only set a flag, run() calls stop() within 0.25 s.
        self._signalled = True

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: List[Any] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous.append((sig, signal.signal(sig, self._on_signal)))

        def restore() -> None:
            for sig, handler in previous:
                signal.signal(sig, handler)

        return restore
