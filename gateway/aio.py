"""One owner for a session's background work: a task set, cancelled and awaited on close.

Every task a session (or its conversation) starts is created here, so closing the
session cancels and awaits all of them: none outlives its call, and none is
tracked in a module global or forgotten on a helper object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """Tasks owned by one session. ``close()`` cancels and awaits them all; safe to call twice."""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def create_task(self, coroutine: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coroutine`` as a task of this set. After ``close()`` it is cancelled at once."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if self._closed:
            task.cancel()
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: background task %s failed", self._name or "task set", task.get_name(),
                         exc_info=task.exception())

    async def close(self) -> None:
        """Cancel every task (but the one calling) and wait until all have ended."""
        self._closed = True
        current = asyncio.current_task()
        while True:
            pending = [task for task in self._tasks if task is not current]
            if not pending:
                return
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)  # children's errors were logged in _done
