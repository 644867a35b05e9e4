"""An in-memory fake of the node's worker API, for the client's unit tests only.

It implements the contract of issue 12 (part 2) with a queue, leases with
tokens, heartbeat answers, a cancel flag and the results recorded, plus switches
the tests use: forget the workers (a restart), mark a lease stale, a result size
limit. Every request is logged in ``events`` so tests can check order.
"""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple


class FakeNode:
    """The node state; ``start()`` serves it on a free loopback port."""

    def __init__(
        self,
        lease_ms: int = 2000,
        heartbeat_ms: int = 50,
        max_result_bytes: int = 1 << 20,
        external_kinds: Tuple[str, ...] = ("py_square", "py_noop", "py_block", "py_fail"),
        max_attempts: int = 1,
    ) -> None:
        self.lease_ms = lease_ms
        self.heartbeat_ms = heartbeat_ms
        self.max_result_bytes = max_result_bytes
        self.external_kinds = set(external_kinds)
        self.max_attempts = max_attempts
        self.cond = threading.Condition()
        self.tasks: Dict[str, Dict[str, Any]] = {}
        self.queue: List[str] = []
        self.workers: Dict[str, Dict[str, Any]] = {}
        self.stale_tokens: set = set()
        self.events: List[Tuple[str, Any]] = []
        self.heartbeats: List[Dict[str, Any]] = []
        self.reports: List[Dict[str, Any]] = []
        self.registrations: List[Dict[str, Any]] = []
        self.auth_headers: List[Optional[str]] = []
        self.max_held: Dict[str, int] = {}
        #: Polls that asked for more tasks than the worker had free slots.
        self.over_asks = 0
        self.closed = False
        #: Close each connection after answering, without saying so (as an idle
        #: keep-alive connection closed by the server looks to the client).
        self.drop_connections = False
        self._ids = itertools.count(1)
        self._server: Optional[ThreadingHTTPServer] = None

    # --- test controls ---------------------------------------------------------

    def start(self) -> "FakeNode":
        """Serve on 127.0.0.1:<free port> from a daemon thread."""
        node = self

        class Handler(_Handler):
            fake = node

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        """The base URL the fake serves on."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop serving and wake parked polls."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def submit(self, kind: str, params: Any) -> str:
        """Queue a task; returns its id."""
        with self.cond:
            tid = f"t{next(self._ids)}"
            self.tasks[tid] = {"id": tid, "kind": kind, "params": params, "attempt": 1,
                               "status": "queued", "token": None, "worker": None,
                               "result": None, "error": None, "cancel": False}
            self.queue.append(tid)
            self.cond.notify_all()
            return tid

    def task(self, tid: str) -> Dict[str, Any]:
        """A copy of a task's record."""
        with self.cond:
            return dict(self.tasks[tid])

    def cancel(self, tid: str) -> None:
        """Ask for a cancel: the next heartbeat answers ``cancel_requested``."""
        with self.cond:
            self.tasks[tid]["cancel"] = True

    def mark_stale(self, tid: str) -> None:
        """Make the task's current token stale (as if its lease expired)."""
        with self.cond:
            self.stale_tokens.add(self.tasks[tid]["token"])

    def forget_workers(self) -> None:
        """Forget every worker, as a restarted node does (its calls answer 404)."""
        with self.cond:
            self.workers.clear()
            self.events.append(("forget", None))
            self.cond.notify_all()

    def reports_for(self, tid: str) -> List[Dict[str, Any]]:
        """Every result entry the client sent for a task (recorded or not)."""
        with self.cond:
            return [r for r in self.reports if r.get("id") == tid]

    def held(self, wid: str) -> int:
        """Leases the worker holds now."""
        with self.cond:
            return sum(1 for t in self.tasks.values() if t["status"] == "leased" and t["worker"] == wid)

    # --- the API ---------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> Tuple[int, Any]:
        """Serve one request: returns (status, JSON body or None)."""
        parts = [p for p in path.split("/") if p]
        with self.cond:
            self.events.append((method, path))
        if method == "POST" and parts == ["v1", "workers"]:
            return self._register(body)
        if len(parts) >= 3 and parts[:2] == ["v1", "workers"]:
            wid = parts[2]
            with self.cond:
                if wid not in self.workers:
                    return _err(404, "unknown_worker")
            if method == "DELETE" and len(parts) == 3:
                return self._delete(wid)
            if method == "POST" and len(parts) == 4:
                action = {"poll": self._poll, "heartbeat": self._heartbeat, "results": self._results}
                if parts[3] in action:
                    return action[parts[3]](wid, body)
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "tasks"]:
            if parts[3] in ("complete", "fail"):
                return self._single(parts[2], parts[3], body)
        return _err(404, "not_found")

    def _register(self, body: Any) -> Tuple[int, Any]:
        kinds = body.get("kinds") or []
        if any(k not in self.external_kinds for k in kinds):
            return _err(422, "unknown_kind")
        with self.cond:
            wid = f"w{next(self._ids)}"
            self.workers[wid] = {"kinds": set(kinds), "slots": int(body["slots"]), "body": body}
            self.registrations.append(dict(body, worker_id=wid))
            self.cond.notify_all()
        return 201, {"worker_id": wid, "lease_ms": self.lease_ms, "heartbeat_ms": self.heartbeat_ms}

    def _poll(self, wid: str, body: Any) -> Tuple[int, Any]:
        deadline = time.monotonic() + min(int(body.get("wait_ms", 0)), 30000) / 1000.0
        with self.cond:
            while True:
                worker = self.workers.get(wid)
                if worker is None:
                    return _err(404, "unknown_worker")
                free = worker["slots"] - self.held(wid)
                if int(body.get("max", 1)) > free:
                    self.over_asks += 1
                want = min(int(body.get("max", 1)), free)
                ready = [t for t in self.queue if self.tasks[t]["kind"] in worker["kinds"]][:want]
                left = deadline - time.monotonic()
                if ready or left <= 0 or self.closed:
                    break
                self.cond.wait(left)
            out = []
            for tid in ready:
                self.queue.remove(tid)
                task = self.tasks[tid]
                task.update(status="leased", worker=wid, token=f"{tid}.{next(self._ids)}")
                out.append({k: task[k] for k in ("id", "kind", "params", "attempt", "token")})
            self.max_held[wid] = max(self.max_held.get(wid, 0), self.held(wid))
            return 200, {"tasks": out}

    def _state(self, token: str) -> str:
        task = self.tasks.get(token.split(".")[0])
        if token in self.stale_tokens or task is None or task["token"] != token or task["status"] != "leased":
            return "stale"
        return "cancel_requested" if task["cancel"] else "ok"

    def _heartbeat(self, wid: str, body: Any) -> Tuple[int, Any]:
        with self.cond:
            self.heartbeats.append(body)
            self.cond.notify_all()
            return 200, {"leases": [{"token": t, "state": self._state(t)} for t in body["tokens"]]}

    def _record(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        tid, token = entry.get("id"), entry.get("token", "")
        task = self.tasks.get(tid)
        if task is None:
            return {"id": tid, "outcome": "not_found"}
        if task["status"] in ("succeeded", "failed"):
            return {"id": tid, "outcome": "already_terminal"}
        if self._state(token) == "stale":
            return {"id": tid, "outcome": "stale_token"}
        if "result" in entry:
            if len(json.dumps(entry["result"])) > self.max_result_bytes:
                return {"id": tid, "outcome": "too_large"}
            task.update(status="succeeded", result=entry["result"], worker=None)
            return {"id": tid, "outcome": "recorded"}
        task["error"] = entry["error"]
        retry = bool(entry["error"]["retryable"]) and task["attempt"] < self.max_attempts
        if retry:
            task.update(status="queued", attempt=task["attempt"] + 1, worker=None)
            self.queue.append(tid)
        else:
            task.update(status="failed", worker=None)
        return {"id": tid, "outcome": "recorded", "will_retry": retry}

    def _results(self, wid: str, body: Any) -> Tuple[int, Any]:
        with self.cond:
            answers = []
            for entry in body["results"]:
                self.reports.append(entry)
                self.events.append(("result", entry["id"]))
                answers.append(self._record(entry))
            self.cond.notify_all()
            return 200, {"results": answers}

    def _single(self, tid: str, action: str, body: Any) -> Tuple[int, Any]:
        entry = dict(body, id=tid)
        with self.cond:
            answer = self._record(entry)
            self.cond.notify_all()
        outcome = answer["outcome"]
        if outcome in ("stale_token", "already_terminal"):
            return _err(409, outcome)
        if outcome == "too_large":
            return _err(413, "too_large")
        if outcome == "not_found":
            return _err(404, "not_found")
        return 200, ({"will_retry": answer["will_retry"]} if action == "fail" else {})

    def _delete(self, wid: str) -> Tuple[int, Any]:
        with self.cond:
            self.workers.pop(wid, None)
            for task in self.tasks.values():
                if task["status"] == "leased" and task["worker"] == wid:
                    task.update(status="queued", worker=None, token=None)
                    self.queue.append(task["id"])
            self.events.append(("deleted", wid))
            self.cond.notify_all()
        return 204, None


def _err(status: int, code: str) -> Tuple[int, Any]:
    return status, {"error": {"code": code, "message": code, "request_id": "fake"}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeNode

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with self.fake.cond:
            self.fake.auth_headers.append(self.headers.get("Authorization"))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, answer = _err(400, "bad_json")
        else:
            status, answer = self.fake.handle(self.command, self.path, body)
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client went away (e.g. an aborted poll)
            self.close_connection = True
        if self.fake.drop_connections:
            self.close_connection = True

    do_GET = do_POST = do_DELETE = _serve
