"""The worker's two answers to failure, each written once: wait and retry (Redis or the broker is away), or
stop the process (a bug: nothing may be acknowledged or committed after it).

- `Backoff`: exponential waits from `retry_backoff_s`, doubling up to `MAX_BACKOFF_S`, logged and counted;
  `retry(op, ...)` runs an operation until it succeeds.
- `exit_on_bug(doing)`: log the exception with its traceback and exit with `EXIT_UNEXPECTED` at once, without
  running shutdown handlers that would commit offsets or acknowledge events. The orchestrator restarts the
  process; what was in flight is redelivered and made idempotent by the state in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

log = logging.getLogger("stream")

EXIT_UNEXPECTED = 70  # EX_SOFTWARE
MAX_BACKOFF_S = 30.0

T = TypeVar("T")


class Backoff:
    """Waits of `first`, 2 x `first`, ... up to MAX_BACKOFF_S; `reset()` after a success."""

    def __init__(self, first: float, counter: Any = None) -> None:
        self.first = first
        self.delay = first
        self.counter = counter  # a prometheus counter of retries, if any

    def reset(self) -> None:
        self.delay = self.first

    async def wait(self, what: str, error: BaseException) -> None:
        """Log `what failed, retrying in Ns: error`, count it, sleep, and double the next wait."""
        if self.counter is not None:
            self.counter.inc()
        log.warning("%s failed, retrying in %.1fs: %s: %s", what, self.delay, type(error).__name__, error)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, MAX_BACKOFF_S)


async def retry(op: Callable[[], Awaitable[T]], retryable: tuple[type[BaseException], ...], backoff: Backoff,
                what: str, on_error: Callable[[], Awaitable[Any]] | None = None) -> T:
    """`await op()` until it does not raise one of `retryable` (`on_error` cleans up after each failure)."""
    while True:
        try:
            return await op()
        except retryable as e:
            if on_error is not None:
                await on_error()
            await backoff.wait(what, e)


def exit_on_bug(doing: str) -> NoReturn:
    """Called from an `except Exception` at a task's boundary: the error is a bug. Log it and exit now."""
    log.critical("unexpected error %s; exiting without acknowledging or committing it", doing, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_UNEXPECTED)
