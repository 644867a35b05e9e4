"""The HTTP layer: keep-alive reuse, reconnecting, aborting the long poll."""

import threading
import time
import unittest

from helpers import WorkerCase, wait_until
from taskmesh_worker import Unreachable
from taskmesh_worker.http import NodeClient

REGISTER = {"name": "t", "kinds": ["py_noop"], "slots": 1}


class Http(WorkerCase):
    def test_a_connection_closed_by_the_node_while_idle_is_reopened(self) -> None:
        client = NodeClient([self.node.url])
        self.addCleanup(client.close)
        self.assertEqual(client.call("POST", "/v1/workers", REGISTER).status, 201)
        self.node.drop_connections = True
        for _ in range(3):
            self.assertEqual(client.call("POST", "/v1/workers", REGISTER).status, 201)
        self.assertEqual(len(self.node.registrations), 4)

    def test_errors_carry_the_node_error_code(self) -> None:
        client = NodeClient([self.node.url])
        self.addCleanup(client.close)
        resp = client.call("POST", "/v1/workers/nobody/poll", {"max": 1, "wait_ms": 0})
        self.assertEqual((resp.status, resp.error().code), (404, "unknown_worker"))

    def test_abort_cuts_a_parked_poll_and_every_later_one(self) -> None:
        client = NodeClient([self.node.url])
        self.addCleanup(client.close)
        wid = client.call("POST", "/v1/workers", REGISTER).body["worker_id"]
        outcome: list = []

        def poll() -> None:
            started = time.monotonic()
            try:
                client.call("POST", f"/v1/workers/{wid}/poll", {"max": 1, "wait_ms": 20000},
                            timeout=30, abortable=True)
                outcome.append("answered")
            except Unreachable:
                outcome.append(time.monotonic() - started)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        wait_until(lambda: ("POST", f"/v1/workers/{wid}/poll") in self.node.events, what="parked poll")
        client.abort()
        thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertIsInstance(outcome[0], float, outcome)
        self.assertLess(outcome[0], 5)
        with self.assertRaises(Unreachable):
            client.call("POST", f"/v1/workers/{wid}/poll", {"max": 1, "wait_ms": 0}, abortable=True)
        # Calls that are not abortable still work.
        self.assertEqual(client.call("POST", f"/v1/workers/{wid}/heartbeat", {"tokens": []}).status, 200)

    def test_urls_must_be_http(self) -> None:
        with self.assertRaises(ValueError):
            NodeClient(["ftp://example.com"])
        with self.assertRaises(ValueError):
            NodeClient([])


if __name__ == "__main__":
    unittest.main()
