"""taskmesh-worker: run taskmesh tasks of external kinds in Python.

>>> from taskmesh_worker import Worker, Retryable
>>> w = Worker("http://127.0.0.1:8080", slots=4)
>>> @w.task("py_square")
... def square(params, ctx):
...     return {"y": params["x"] ** 2}
>>> w.run()  # doctest: +SKIP

Layout: ``worker`` (the public Worker), ``context`` (what a handler gets),
``errors`` (Retryable, Permanent, client errors), ``leases`` (leases held),
``session`` (registration), ``loops`` (poll, heartbeat, report threads),
``http`` (the JSON client).
"""

from .context import TaskContext
from .errors import (
    ApiError,
    ClientError,
    Permanent,
    RegistrationRejected,
    Retryable,
    TaskError,
    Unreachable,
)
from .worker import Worker

__all__ = [
    "ApiError",
    "ClientError",
    "Permanent",
    "RegistrationRejected",
    "Retryable",
    "TaskContext",
    "TaskError",
    "Unreachable",
    "Worker",
]

__version__ = "0.1.0"
