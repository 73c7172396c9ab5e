"""The worker threads that run the synchronous route handlers.

Litestar runs a ``sync_to_thread`` handler in the event loop's default executor, which Python
sizes at ``min(32, CPUs + 4)``: six threads on a two-core machine. A durable write's handler
spends most of its time waiting for the ledger's batch to commit, so six threads meant at most
six writes per batch however many requests were waiting, and a commit (an ``fsync``, the SQL
of a batch) for every few writes. With 32 threads the waiting writes share a batch: a profile
of donations at 32 concurrent calls measured a quarter less CPU per donation
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

HANDLER_THREADS = 32  # database.POOL_SIZE keeps a connection open for each


def widen_handler_pool() -> None:
    """Give the running event loop an executor of ``HANDLER_THREADS`` threads (asyncio shuts
    it down with the loop)."""
    pool = ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="handler")
    asyncio.get_running_loop().set_default_executor(pool)
