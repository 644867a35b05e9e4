"""Shared helpers of the client's tests: waiting with a deadline, a running worker."""

import os
import sys
import threading
import time
import unittest
from typing import Any, Callable

# Test the source tree (kernels/python), from wherever discover was started.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fake_node import FakeNode  # noqa: E402
from taskmesh_worker import Worker  # noqa: E402


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` every 10 ms until it is truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        threading.Event().wait(0.01)


class WorkerCase(unittest.TestCase):
    """A test with a fake node started, and helpers to run workers against it."""

    node_args: dict = {}

    def setUp(self) -> None:
        self.node = FakeNode(**self.node_args).start()
        self.addCleanup(self.node.close)

    def worker(self, **kwargs: Any) -> Worker:
        """A worker on the fake node (short poll waits unless given)."""
        kwargs.setdefault("poll_wait_ms", 20000)
        kwargs.setdefault("grace_s", 5.0)
        return Worker(kwargs.pop("url", self.node.url), **kwargs)

    def start(self, worker: Worker) -> threading.Thread:
        """Run ``worker`` on a thread; stopped and joined at cleanup."""
        errors: list = []

        def target() -> None:
            try:
                worker.run()
            except BaseException as exc:  # surfaced by the cleanup
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.errors = errors  # type: ignore[attr-defined]
        thread.start()

        def cleanup() -> None:
            worker.stop()
            thread.join(15)
            self.assertFalse(thread.is_alive(), "run() did not return after stop()")
            self.assertEqual(errors, [])

        self.addCleanup(cleanup)
        wait_until(lambda: worker.worker_id, what="registration")
        return thread

    def wait_status(self, tid: str, status: str, timeout: float = 5.0) -> dict:
        """Wait until the fake node's task reaches ``status``; returns the record."""
        wait_until(lambda: self.node.task(tid)["status"] == status, timeout, f"{tid} {status}")
        return self.node.task(tid)


def gate() -> threading.Event:
    """An event handlers wait on (with a deadline, so a failing test cannot hang)."""
    return threading.Event()


def wait_gate(event: threading.Event, timeout: float = 10.0) -> None:
    """Wait for ``event``; fail the handler if it never comes."""
    if not event.wait(timeout):
        raise AssertionError("gate never opened")
