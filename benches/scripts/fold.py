#!/usr/bin/env python3
"""Groups `perf script` samples of a taskmesh node by what they were doing.

Usage: perf script -i perf.data --comm <thread name> | python3 benches/scripts/fold.py [--callers]

Record with DWARF stacks (Rust release builds keep no frame pointers), e.g.
`perf record -F 299 --call-graph dwarf,16384 -p <node pid> -- sleep 6`.
Each sample is attributed to the first category that matches, scanning from the leaf
frame outwards; percentages are of the samples read. Kernel samples are attributed to
the system call they were in. With --callers, allocator and kernel time is charged to
the nearest enclosing taskmesh category instead (e.g. a realloc inside record encoding
counts as encoding), with its own kind in brackets.
"""
import collections
import re
import sys

# (category, pattern), most specific first: the first match from the leaf outwards wins.
CATEGORIES = [
    ("store: record encode (rmp_serde, Vec growth)", r"store::codec::encode"),
    ("store: record decode", r"store::codec::decode"),
    ("store: redb commit (incl. fdatasync)", r"WriteTransaction::commit"),
    ("store: apply start/requeue/finish (Tables::change)", r"Tables::change"),
    ("store: apply create (Tables::create)", r"Tables::create"),
    ("store: answer callers (oneshot, wake)", r"committer::Done::send|oneshot::Sender"),
    ("malloc/free (glibc)", r"\b(malloc|_int_free|cfree|_int_malloc|realloc|_int_realloc|"
     r"unlink_chunk|malloc_consolidate|__lll_lock_wait_private|__lll_lock_wake_private)\b"),
    ("prometheus metrics", r"prometheus::"),
    ("NodeContext/Metrics clone+drop", r"NodeContext|drop_in_place<taskmesh_actors::metrics"),
    ("uuid (generate, parse) / getrandom", r"uuid::|getrandom"),
    ("serde_json", r"serde_json::"),
    ("store: other (embedded store code)", r"store::embedded"),
    ("dispatcher actor", r"taskmesh_actors::dispatcher"),
    ("worker pool / worker actors", r"taskmesh_actors::worker_pool"),
    ("ingress handlers", r"taskmesh_actors::ingress"),
    ("ractor (mailboxes, spawn)", r"ractor::"),
    ("tower-http (trace, request id)", r"tower_http::"),
    ("axum routing/extractors", r"axum::|axum_core::"),
    ("hyper HTTP/1", r"hyper::|httparse"),
    ("tokio runtime", r"tokio::"),
]


def syscall(frames):
    for f in frames:
        m = re.search(r"__x64_sys_(\w+)|\b(do_writev)\b", f)
        if m:
            return "writev" if m.group(2) else m.group(1)
    return "irq/other"


def category_of(frames):
    return next(
        (c for f in frames for c, p in CATEGORIES if re.search(p, f)),
        "other",
    )


def main():
    callers = "--callers" in sys.argv[1:]
    counts = collections.Counter()
    total = 0
    for sample in sys.stdin.read().split("\n\n"):
        frames = [l.strip() for l in sample.split("\n")[1:] if l.strip()]
        if not frames:
            continue
        total += 1
        if "kernel" in frames[0]:
            own = "kernel: " + syscall(frames)
        else:
            own = category_of(frames)
        if callers and (own.startswith("kernel") or own.startswith("malloc")):
            user = [f for f in frames if "kernel" not in f]
            outer = category_of([f for f in user if not re.search(CATEGORIES[6][1], f)])
            if outer != "other":
                own = f"{outer} [{own.split(':')[0].split(' ')[0]}]"
        counts[own] += 1
    print(f"{total} samples")
    for category, n in counts.most_common():
        print(f"{100 * n / max(total, 1):5.1f}%  {category}")


if __name__ == "__main__":
    main()
