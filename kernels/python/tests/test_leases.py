"""Leases: cancel, stale leases, re-registration, graceful stop and grace expiry."""

import os
import signal
import threading
import time
import unittest

from helpers import WorkerCase, wait_gate, wait_until


class Leases(WorkerCase):
    def test_cancel_requested_makes_ctx_cancelled_while_the_handler_runs(self) -> None:
        w = self.worker()
        started, flags = threading.Event(), {}

        @w.task("py_block")
        def block(params, ctx):
            flags["before"] = ctx.cancelled
            started.set()
            wait_until(lambda: ctx.cancelled, what="ctx.cancelled")
            flags["lost"] = ctx.lease_lost
            return {"cancelled": True}

        self.start(w)
        tid = self.node.submit("py_block", {})
        wait_gate(started)
        self.node.cancel(tid)
        self.assertEqual(self.wait_status(tid, "succeeded")["result"], {"cancelled": True})
        self.assertEqual(flags, {"before": False, "lost": False})

    def test_the_result_of_a_stale_lease_is_not_reported(self) -> None:
        w = self.worker()
        started, flags = threading.Event(), {}

        @w.task("py_block")
        def block(params, ctx):
            if params.get("first"):
                started.set()
                wait_until(lambda: ctx.lease_lost, what="lease lost")
                flags.update(cancelled=ctx.cancelled, lost=ctx.lease_lost)
            return {"first": params.get("first", False)}

        self.start(w)
        first = self.node.submit("py_block", {"first": True})
        wait_gate(started)
        self.node.mark_stale(first)
        wait_until(lambda: flags, what="handler saw the stale lease")
        # A later task's result is reported: by then the stale one would have been.
        self.wait_status(self.node.submit("py_block", {}), "succeeded")
        self.assertEqual(self.node.reports_for(first), [])
        self.assertEqual(flags, {"cancelled": True, "lost": True})
        # The stale token is no longer heartbeated.
        token = self.node.task(first)["token"]
        count = len(self.node.heartbeats)
        wait_until(lambda: len(self.node.heartbeats) > count + 1, what="two more heartbeats")
        self.assertNotIn(token, self.node.heartbeats[-1]["tokens"])

    def test_a_404_makes_the_worker_register_again_and_voids_its_leases(self) -> None:
        w = self.worker()
        started, release, flags = threading.Event(), threading.Event(), {}

        @w.task("py_block")
        def block(params, ctx):
            if params.get("old"):
                started.set()
                wait_gate(release)
                flags["lost"] = ctx.lease_lost
            return {"ok": True}

        self.start(w)
        first_id = w.worker_id
        old = self.node.submit("py_block", {"old": True})
        wait_gate(started)
        self.node.forget_workers()
        wait_until(lambda: len(self.node.registrations) == 2, what="a second registration")
        release.set()
        wait_until(lambda: "lost" in flags, what="old handler returned")
        self.assertTrue(flags["lost"])
        new = self.node.submit("py_block", {})
        self.wait_status(new, "succeeded")
        self.assertEqual(self.node.reports_for(old), [])
        self.assertNotEqual(w.worker_id, first_id)
        self.assertEqual(w.worker_id, self.node.registrations[1]["worker_id"])

    def test_stop_lets_a_running_task_finish_and_report_then_deletes_the_worker(self) -> None:
        w = self.worker(slots=2, poll_wait_ms=20000)
        started, release = threading.Event(), threading.Event()

        @w.task("py_block")
        def block(params, ctx):
            started.set()
            wait_gate(release)
            return {"done": True}

        thread = self.start(w)
        wid = w.worker_id
        tid = self.node.submit("py_block", {})
        wait_gate(started)
        # The first poll got the task; with one slot free, a second one is parked.
        poll = ("POST", f"/v1/workers/{wid}/poll")
        wait_until(lambda: self.node.events.count(poll) == 2, what="a parked poll")
        stopped_at = time.monotonic()
        w.stop()
        thread.join(0.3)
        self.assertTrue(thread.is_alive(), "run() returned before the task finished")
        release.set()
        thread.join(10)
        self.assertFalse(thread.is_alive())
        self.assertLess(time.monotonic() - stopped_at, 5, "the parked poll was not cut short")
        self.assertEqual(self.node.task(tid)["result"], {"done": True})
        events = self.node.events
        self.assertLess(events.index(("result", tid)), events.index(("deleted", wid)))
        self.assertEqual(events.count(poll), 2, "polled after stop()")

    def test_grace_expiry_returns_from_run_and_the_delete_releases_the_lease(self) -> None:
        w = self.worker(grace_s=0.3)
        started, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)

        @w.task("py_block")
        def block(params, ctx):
            started.set()
            wait_gate(release, 30)
            return {"late": True}

        thread = self.start(w)
        wid = w.worker_id
        tid = self.node.submit("py_block", {})
        wait_gate(started)
        with self.assertLogs("taskmesh_worker") as logs:
            w.stop()
            thread.join(5)
        self.assertFalse(thread.is_alive(), "run() did not return after the grace period")
        self.assertIn(("deleted", wid), self.node.events)
        task = self.node.task(tid)
        self.assertEqual((task["status"], task["attempt"]), ("queued", 1))
        self.assertTrue(any("abandoned" in line for line in logs.output))
        release.set()
        # The handler's late result must not be reported (the lease is gone).
        wait_until(lambda: w._table.counts() == (0, 0), what="handler returned")
        self.assertEqual(self.node.reports_for(tid), [])

    @unittest.skipUnless(threading.current_thread() is threading.main_thread(), "needs the main thread")
    def test_sigterm_stops_a_worker_run_from_the_main_thread(self) -> None:
        w = self.worker()

        @w.task("py_noop")
        def noop(params, ctx):
            return {}

        previous = signal.getsignal(signal.SIGTERM)

        def kill_when_registered() -> None:
            wait_until(lambda: w.worker_id, what="registration")
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=kill_when_registered, daemon=True).start()
        w.run()  # returns on SIGTERM
        wid = self.node.registrations[0]["worker_id"]
        self.assertIn(("deleted", wid), self.node.events)
        self.assertIs(signal.getsignal(signal.SIGTERM), previous)


if __name__ == "__main__":
    unittest.main()
