"""Calls that arrive together, run together: dynamic batching for /predict, as model servers do it.

Scoring one customer costs mostly fixed overhead (an XGBoost DMatrix and a TreeSHAP call take
~0.3 ms whether they hold one row or thirty; the rules' numpy work is the same), so under load
the API answers sooner by scoring every /predict call waiting on the event loop in one pass than
by scoring them one after the other.

No call waits for company: with no pass under way, a call schedules one for the event loop's next
turn, and every call the loop starts before that turn joins it; with the loop idle a pass holds
one call, and the wait is one loop turn (microseconds). One pass runs at a time: the calls that
arrive while it reads Redis and scores go in the next, so the busier the API, the more calls
share a pass (at most `max_batch`, so that no pass holds the loop for long). Each caller gets
its own answer or its own exception; a pass that fails as a whole (Redis gone) fails each of its
callers with that error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
In = TypeVar("In")
Out = TypeVar("Out")

#: One pass's answers, in the order of its inputs: an answer, or the exception for that caller alone.
RunBatch = Callable[[list[In]], Awaitable[Sequence[Out | Exception]]]


class Coalescer(Generic[In, Out]):
    """`await coalescer(item)`: the item's answer from `run_batch`, run over every item waiting."""

    def __init__(
        self, run_batch: RunBatch[In, Out], *, max_batch: int = 64, on_pass: Callable[[int], None] | None = None
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._busy = False  # a pass is scheduled or running
        self.on_pass = on_pass  # told each pass's size (the API's metrics)
        self._pass: asyncio.Task[None] | None = None  # a strong reference to the running pass

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._start_pass)
        return await future

    def _start_pass(self) -> None:
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        batch = [(item, future) for item, future in batch if not future.done()]  # callers gone (cancelled)
        if not batch:
            self._next()
            return
        self._pass = asyncio.get_running_loop().create_task(self._run(batch))
        self._pass.add_done_callback(lambda _task: self._next())

    def _next(self) -> None:
        """After a pass: the calls that came meanwhile make the next one."""
        self._pass = None
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._start_pass)
        else:
            self._busy = False

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        if self.on_pass is not None:
            self.on_pass(len(batch))
        try:
            answers = await self.run_batch([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"a pass of {len(batch)} items gave {len(answers)} answers")
        except Exception as exc:  # each caller gets the pass's error as its own
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
