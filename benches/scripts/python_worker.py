#!/usr/bin/env python3
"""External no-op tasks through one Python worker process, and the parked-poll latency.

Starts a node (`--bin`, a release build) on its embedded store with the external kind
`py_noop`, then:

1. throughput: one worker process (`taskmesh_worker.Worker`, `--slots` slots) is
   connected; this process submits `--tasks` no-op tasks in batches of 1,000 as fast as
   the node takes them, and times from the first submission until the node counts every
   one succeeded (`taskmesh_tasks_completed_total`, read every 20 ms). Submission and
   execution overlap: it is the end-to-end rate.
2. latency: a worker (1 slot) sits parked in a poll; `--samples` times in a row, this
   process submits one task carrying `time.monotonic()` and the handler answers how long
   ago that was when it started (CLOCK_MONOTONIC is one clock for every process), then
   waits for the task to finish so that the next one again meets a parked poll.

Prints one JSON object: the figures, and the CPU seconds of the node and the workers.
Usage: python3 benches/scripts/python_worker.py --bin target/release/taskmesh
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = os.path.join(ROOT, "kernels", "python")

WORKER = r"""
import sys, time
from taskmesh_worker import Worker
w = Worker(sys.argv[1], slots=int(sys.argv[2]), name=sys.argv[3])

@w.task("py_noop")
def noop(params, ctx):
    sent = params.get("t")
    return {"late_s": time.monotonic() - sent} if sent is not None else {}

w.run()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, port, key=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.key = key

    def call(self, method, path, body=None):
        if self.conn.sock is None:
            self.conn.connect()
            # http.client sends a POST's headers and body apart: without this, the body
            # waits for the node's delayed ACK (40 ms).
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if data else {}
        if self.key:
            headers["authorization"] = f"Bearer {self.key}"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, raw

    def completed(self):
        _, raw = self.call("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith("taskmesh_tasks_completed_total") and 'kind="py_noop"' in line \
                    and 'outcome="succeeded"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def wait_ready(node, deadline):
    while time.monotonic() < deadline:
        try:
            if node.call("GET", "/health/ready")[0] == 200:
                return
        except OSError:
            node.conn.close()
        time.sleep(0.05)
    sys.exit("node not ready")


def start_worker(url, slots, name):
    env = dict(os.environ, PYTHONPATH=CLIENT)
    return subprocess.Popen([sys.executable, "-c", WORKER, url, str(slots), name], env=env,
                            stdout=subprocess.DEVNULL)


def throughput(node, url, tasks, slots):
    worker = start_worker(url, slots, "bench-throughput")
    try:
        # Registered once a poll is parked.
        deadline = time.monotonic() + 30
        while b"taskmesh_external_parked_polls 1" not in node.call("GET", "/metrics")[1]:
            if time.monotonic() > deadline:
                sys.exit("worker never polled")
            time.sleep(0.02)
        base = node.completed()
        worker_cpu0 = cpu_seconds(worker.pid)
        start = time.monotonic()
        batch = [{"kind": "py_noop", "params": {}, "max_retries": 0}] * 1000
        sent = 0
        while sent < tasks:
            status, raw = node.call("POST", "/v1/tasks/batch", {"tasks": batch})
            if status == 202:
                sent += len(batch)
            elif status != 503:
                sys.exit(f"batch answered {status} {raw[:200]!r}")
        while node.completed() - base < sent:
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        return {"tasks": sent, "seconds": round(elapsed, 3), "tasks_per_s": round(sent / elapsed),
                "worker_cpu_s": round(cpu_seconds(worker.pid) - worker_cpu0, 2)}
    finally:
        worker.terminate()
        worker.wait(60)


def latency(node, url, samples):
    worker = start_worker(url, 1, "bench-latency")
    late = []
    try:
        for _ in range(samples):
            # Wait until the worker's poll is parked again.
            deadline = time.monotonic() + 30
            while b"taskmesh_external_parked_polls 1" not in node.call("GET", "/metrics")[1]:
                if time.monotonic() > deadline:
                    sys.exit("worker never polled")
                time.sleep(0.001)
            body = {"kind": "py_noop", "params": {"t": time.monotonic()}, "max_retries": 0}
            status, raw = node.call("POST", "/v1/tasks", body)
            if status != 202:
                sys.exit(f"submit answered {status}")
            task = json.loads(raw)["id"]
            status, raw = node.call("GET", f"/v1/tasks/{task}?wait_ms=10000")
            view = json.loads(raw)
            late.append(view["result"]["late_s"] * 1000.0)
    finally:
        worker.terminate()
        worker.wait(60)
    late.sort()
    return {"samples": len(late), "p50_ms": round(statistics.median(late), 3),
            "p99_ms": round(late[int(len(late) * 0.99) - 1], 3), "max_ms": round(late[-1], 3)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "taskmesh"))
    p.add_argument("--tasks", type=int, default=50_000)
    p.add_argument("--slots", type=int, default=256)
    p.add_argument("--samples", type=int, default=300)
    args = p.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="taskmesh-bench-")
    node_proc = subprocess.Popen(
        [args.bin, "node", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
         "--external-kinds", "py_noop", "--log", "warn"],
        stdout=subprocess.DEVNULL)
    try:
        node = Node(port)
        wait_ready(node, time.monotonic() + 30)
        # API keys are on: the node's admin key, for our calls and (through
        # TASKMESH_API_KEY) the worker's.
        with open(os.path.join(data, "admin.key")) as f:
            node.key = f.read().strip()
        os.environ["TASKMESH_API_KEY"] = node.key
        url = f"http://127.0.0.1:{port}"
        cpu0 = cpu_seconds(node_proc.pid)
        result = {"throughput": throughput(node, url, args.tasks, args.slots)}
        result["throughput"]["node_cpu_s"] = round(cpu_seconds(node_proc.pid) - cpu0, 2)
        result["latency"] = latency(node, url, args.samples)
        result["loadavg"] = os.getloadavg()[0]
        print(json.dumps(result, indent=2))
    finally:
        node_proc.terminate()
        node_proc.wait(30)
        subprocess.run(["rm", "-rf", data], check=False)


if __name__ == "__main__":
    main()
