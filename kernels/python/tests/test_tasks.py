"""Running tasks: results, parallelism, errors, progress, payload limits, HTTP details."""

import logging
import threading
import unittest

from helpers import WorkerCase, wait_gate, wait_until
from taskmesh_worker import Permanent, Retryable, TaskError


class RunTasks(WorkerCase):
    node_args = {"max_result_bytes": 200}

    def test_runs_a_task_and_reports_its_result(self) -> None:
        w = self.worker(slots=2)

        @w.task("py_square")
        def square(params, ctx):
            ctx.progress(0.5, "half way")
            if ctx.cancelled:
                return None
            return {"y": params["x"] ** 2, "attempt": ctx.attempt, "id": ctx.id}

        self.start(w)
        tid = self.node.submit("py_square", {"x": 7})
        task = self.wait_status(tid, "succeeded")
        self.assertEqual(task["result"], {"y": 49, "attempt": 1, "id": tid})
        reg = self.node.registrations[0]
        self.assertEqual((reg["kinds"], reg["slots"]), (["py_square"], 2))
        self.assertEqual(len(self.node.reports_for(tid)), 1)

    def test_runs_up_to_slots_in_parallel_and_never_more(self) -> None:
        w = self.worker(slots=3)
        lock, running, peak, release = threading.Lock(), [0], [0], threading.Event()

        @w.task("py_block")
        def block(params, ctx):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            wait_gate(release)
            with lock:
                running[0] -= 1
            return {"i": params["i"]}

        self.start(w)
        ids = [self.node.submit("py_block", {"i": i}) for i in range(8)]
        wait_until(lambda: running[0] == 3, what="3 handlers running")
        # The node is free to hand out more: the worker must not ask for them.
        self.assertEqual(self.node.held(w.worker_id), 3)
        self.assertEqual(sum(1 for t in ids if self.node.task(t)["status"] == "queued"), 5)
        release.set()
        for tid in ids:
            self.wait_status(tid, "succeeded")
        self.assertEqual(peak[0], 3)
        self.assertLessEqual(self.node.max_held[w.worker_id], 3)
        self.assertEqual(self.node.over_asks, 0, "polled for more than the free slots")

    def test_exceptions_map_to_the_retryable_flag(self) -> None:
        w = self.worker()

        @w.task("py_fail")
        def fail(params, ctx):
            kind = params["raise"]
            if kind == "retryable":
                raise Retryable("try later")
            if kind == "permanent":
                raise Permanent("bad params")
            if kind == "base":
                raise TaskError("plain task error")
            raise ValueError("boom")

        with self.assertLogs("taskmesh_worker", logging.ERROR) as logs:
            self.start(w)
            cases = {k: self.node.submit("py_fail", {"raise": k})
                     for k in ("retryable", "permanent", "base", "other")}
            got = {k: self.wait_status(t, "failed")["error"] for k, t in cases.items()}
        self.assertEqual(got["retryable"], {"message": "try later", "retryable": True})
        self.assertEqual(got["permanent"], {"message": "bad params", "retryable": False})
        self.assertEqual(got["base"], {"message": "plain task error", "retryable": True})
        self.assertEqual(got["other"], {"message": "ValueError: boom", "retryable": True})
        self.assertTrue(any("Traceback" in line and "boom" in line for line in logs.output))

    def test_progress_reaches_the_node_in_a_heartbeat(self) -> None:
        w = self.worker()
        seen = threading.Event()

        def progress_sent(fraction, message):
            return any(
                p.get("fraction") == fraction and p.get("message") == message
                for hb in self.node.heartbeats
                for p in hb.get("progress", {}).values()
            )

        @w.task("py_block")
        def block(params, ctx):
            ctx.progress(0.5, "half way")
            wait_until(lambda: progress_sent(0.5, "half way"), what="progress in a heartbeat")
            ctx.progress(7, None)  # clamped
            wait_until(lambda: progress_sent(1.0, None), what="clamped progress")
            seen.set()
            return {}

        self.start(w)
        tid = self.node.submit("py_block", {})
        self.wait_status(tid, "succeeded")
        self.assertTrue(seen.is_set())
        token = self.node.reports_for(tid)[0]["token"]
        self.assertTrue(any(token in hb.get("progress", {}) for hb in self.node.heartbeats))

    def test_a_too_large_result_becomes_a_permanent_failure(self) -> None:
        w = self.worker()

        @w.task("py_square")
        def big(params, ctx):
            return {"blob": "x" * 1000}

        self.start(w)
        tid = self.node.submit("py_square", {})
        task = self.wait_status(tid, "failed")
        self.assertEqual(task["error"], {"message": "result too large", "retryable": False})
        self.assertIsNone(task["result"])

    def test_a_result_that_is_not_json_becomes_a_permanent_failure(self) -> None:
        w = self.worker()

        @w.task("py_square")
        def odd(params, ctx):
            return {"s": {1, 2}}

        self.start(w)
        tid = self.node.submit("py_square", {})
        error = self.wait_status(tid, "failed")["error"]
        self.assertFalse(error["retryable"])
        self.assertIn("not JSON-serializable", error["message"])

    def test_the_api_key_is_sent_and_never_logged(self) -> None:
        w = self.worker(api_key="s3cret-key")

        @w.task("py_noop")
        def noop(params, ctx):
            raise RuntimeError("log something")

        with self.assertLogs("taskmesh_worker", logging.DEBUG) as logs:
            self.start(w)
            self.wait_status(self.node.submit("py_noop", {}), "failed")
        self.assertTrue(self.node.auth_headers)
        self.assertTrue(all(h == "Bearer s3cret-key" for h in self.node.auth_headers))
        self.assertFalse(any("s3cret" in line for line in logs.output))
        self.assertNotIn("s3cret", repr(w))

    def test_moves_to_the_next_url_when_a_node_is_unreachable(self) -> None:
        dead = "http://127.0.0.1:9"  # discard port: connection refused
        w = self.worker(url=[dead, self.node.url])

        @w.task("py_square")
        def square(params, ctx):
            return {"y": params["x"] ** 2}

        with self.assertLogs("taskmesh_worker", logging.WARNING):
            self.start(w)
        tid = self.node.submit("py_square", {"x": 3})
        self.assertEqual(self.wait_status(tid, "succeeded")["result"], {"y": 9})


if __name__ == "__main__":
    unittest.main()
