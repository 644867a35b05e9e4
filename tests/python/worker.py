"""A taskmesh worker process for the black-box tests (tests/tests/python_worker.rs).

Runs the real client (``taskmesh_worker``, on ``PYTHONPATH``) with one handler. It prints,
flushed, one line per event the tests wait for:

- ``started <task id> <attempt>`` when a handler starts;
- ``saw-cancel <task id>`` when a handler sees ``ctx.cancelled`` (it then returns None).

``py_square`` returns ``{"y": x*x, "by": <name>}`` for ``params["x"]``; with
``params["sleep_s"]`` it first sleeps that long, in small steps, watching for a cancel.

The client's own logs go to stderr.
"""

import argparse
import logging
import sys
import time

from taskmesh_worker import Worker

#: How often a sleeping handler looks at ``ctx.cancelled``.
STEP_S = 0.02


def say(line: str) -> None:
    """One event line on stdout, flushed at once so the test sees it."""
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="a node URL (repeatable)")
    parser.add_argument("--kind", default="py_square", help="the kind the handler runs")
    parser.add_argument("--slots", type=int, default=1, help="tasks run at once")
    parser.add_argument("--name", default="py-worker", help="the worker's name, put in results")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

    urls = args.url if len(args.url) > 1 else args.url[0]
    w = Worker(urls, slots=args.slots, name=args.name, grace_s=5.0)

    @w.task(args.kind)
    def square(params, ctx):
        say(f"started {ctx.id} {ctx.attempt}")
        x = params["x"]
        deadline = time.monotonic() + float(params.get("sleep_s", 0))
        while time.monotonic() < deadline:
            if ctx.cancelled:
                say(f"saw-cancel {ctx.id}")
                return None
            time.sleep(STEP_S)
        return {"y": x * x, "by": args.name}

    w.run()


if __name__ == "__main__":
    main()
