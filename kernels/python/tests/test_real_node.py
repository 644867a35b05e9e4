"""End to end through a real taskmesh node (skipped unless TASKMESH_BIN names the binary).

    TASKMESH_BIN=target/release/taskmesh python3 -m unittest discover -s kernels/python/tests
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest
from typing import Any, Optional, Tuple

from helpers import wait_until
from taskmesh_worker import Worker

BIN = os.environ.get("TASKMESH_BIN")


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: Any = None, key: Optional[str] = None) -> Tuple[int, Any]:
    """One JSON request to the node, with ``key`` as its bearer token when given; (0, None)
    when it does not answer (yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    except (OSError, ValueError):
        return 0, None
    finally:
        conn.close()


@unittest.skipUnless(BIN, "set TASKMESH_BIN to the taskmesh binary to run against a real node")
class RealNode(unittest.TestCase):
    def setUp(self) -> None:
        self.port = free_port()
        data_dir = tempfile.mkdtemp(prefix="taskmesh-pyclient-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        self.node = subprocess.Popen(
            [str(BIN), "node", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir,
             "--external-kinds", "py_square"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        self.addCleanup(self._kill)
        wait_until(lambda: self.node.poll() is not None or call(self.port, "GET", "/health/ready")[0] == 200,
                   30, "the node to be ready")
        if self.node.poll() is not None:
            log.seek(0)
            self.fail(f"the node exited: {log.read()[-2000:].decode(errors='replace')}")
        # API keys are on by default: the node wrote its admin key to its data directory.
        with open(os.path.join(data_dir, "admin.key")) as f:
            self.key = f.read().strip()

    def _kill(self) -> None:
        self.node.kill()
        self.node.wait(10)

    def test_a_python_worker_runs_an_external_task(self) -> None:
        status, body = call(self.port, "POST", "/v1/tasks", {"kind": "py_square", "params": {"x": 7}},
                            key=self.key)
        self.assertEqual(status, 202, body)
        tid = body["id"]
        status, _ = call(self.port, "GET", f"/v1/tasks/{tid}")
        self.assertEqual(status, 401, "no key, no answer")
        w = Worker(f"http://127.0.0.1:{self.port}", slots=2, grace_s=5, api_key=self.key)

        @w.task("py_square")
        def square(params, ctx):
            ctx.progress(0.5, "half way")
            return {"y": params["x"] ** 2}

        errors: list = []

        def run() -> None:
            try:
                w.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            task: Optional[dict] = wait_until(lambda: self._succeeded(tid), 30, f"task {tid} to succeed")
            self.assertEqual(task["result"], {"y": 49})
        finally:
            w.stop()
            thread.join(15)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])

    def _succeeded(self, tid: str) -> Optional[dict]:
        status, body = call(self.port, "GET", f"/v1/tasks/{tid}", key=self.key)
        if status == 200 and body.get("status") in ("failed", "cancelled"):
            raise AssertionError(f"task ended {body}")
        return body if status == 200 and body.get("status") == "succeeded" else None


if __name__ == "__main__":
    unittest.main()
