"""/predict calls that arrive together are scored together: the coalescer alone (pure, a fake pass),
then the real app on the session's Redis, many calls at once through the ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest

from equilibrate.api.app import create_app
from equilibrate.api.coalescing import Coalescer
from equilibrate.dashboard import queries
from equilibrate.features.compute import FEATURES
from tests.api.conftest import Api

V1 = "/api/v1"


class Recorder:
    """A fake pass: doubles each number, refuses negative ones (that caller alone), records the passes."""

    def __init__(self, *, fail_with: Exception | None = None) -> None:
        self.passes: list[list[int]] = []
        self.fail_with = fail_with

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.passes.append(list(items))
        await asyncio.sleep(0)  # a pass awaits I/O (Redis) before it scores
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(f"negative: {n}") if n < 0 else n * 2 for n in items]


def test_calls_waiting_together_share_one_pass_and_each_gets_its_own_answer() -> None:
    recorder = Recorder()
    sizes: list[int] = []

    async def main() -> list[int | BaseException]:
        coalescer = Coalescer(recorder, max_batch=64, on_pass=sizes.append)
        return await asyncio.gather(*(coalescer(n) for n in (1, 2, -3, 4)), return_exceptions=True)

    answers = asyncio.run(main())
    assert answers[:2] == [2, 4] and answers[3] == 8
    assert isinstance(answers[2], ValueError) and str(answers[2]) == "negative: -3"
    assert recorder.passes == [[1, 2, -3, 4]] and sizes == [4]


def test_a_lone_call_does_not_wait_and_passes_are_capped() -> None:
    recorder = Recorder()

    async def main() -> tuple[int, list[int]]:
        coalescer = Coalescer(recorder, max_batch=10)
        alone = await coalescer(7)
        many = await asyncio.gather(*(coalescer(n) for n in range(25)))
        return alone, list(many)

    alone, many = asyncio.run(main())
    assert alone == 14 and many == [n * 2 for n in range(25)]
    assert [len(p) for p in recorder.passes] == [1, 10, 10, 5]


def test_calls_that_arrive_while_a_pass_runs_make_the_next_pass() -> None:
    passes: list[list[int]] = []

    async def main() -> list[int]:
        release = asyncio.Event()

        async def slow(items: list[int]) -> list[int]:
            passes.append(list(items))
            await release.wait()  # the pass is reading Redis
            return [n * 2 for n in items]

        coalescer: Coalescer[int, int] = Coalescer(slow)
        first = asyncio.ensure_future(coalescer(1))
        await asyncio.sleep(0.01)  # the first pass is under way, waiting
        later = [asyncio.ensure_future(coalescer(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert passes == [[1]]  # one pass at a time: the others wait for it
        release.set()
        return [await first, *[await f for f in later]]

    assert asyncio.run(main()) == [2, 4, 6, 8]
    assert passes == [[1], [2, 3, 4]]


def test_a_failed_pass_fails_each_caller_and_the_next_pass_runs() -> None:
    async def main() -> None:
        broken = Coalescer(Recorder(fail_with=ConnectionError("Redis gone")))
        outcomes = await asyncio.gather(broken(1), broken(2), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        healthy = Recorder()
        coalescer = Coalescer(healthy)
        assert await coalescer(5) == 10

    asyncio.run(main())


def test_a_caller_that_went_away_does_not_hold_up_the_others() -> None:
    recorder = Recorder()

    async def main() -> list[int]:
        coalescer = Coalescer(recorder)
        gone = asyncio.ensure_future(coalescer(1))
        stay = [asyncio.ensure_future(coalescer(n)) for n in (2, 3)]
        await asyncio.sleep(0)  # every call is waiting
        gone.cancel()
        return list(await asyncio.gather(*stay))

    assert asyncio.run(main()) == [4, 6]
    assert recorder.passes == [[2, 3]]  # the cancelled call was left out of the pass


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Recorder(), max_batch=0)


def test_concurrent_predict_calls_get_what_each_gets_alone(api: Api) -> None:
    """Known ids, an unknown one, and payloads at once: the same answers as one by one, each 404 its own."""
    rows = queries.queue_page(api.redis, queries.QueueFilter(), 1, 12).rows
    ids = [str(r["customer_id"]) for r in rows]
    stored = queries.customer_detail(api.redis, ids[0])
    assert stored is not None
    payload = {"features": {f: float(stored.profile[f]) for f in FEATURES}}
    bodies = [{"customer_id": c} for c in ids] + [{"customer_id": "C404"}, payload, payload]
    headers = {"X-API-Key": api.reader}

    async def main() -> tuple[list[httpx.Response], list[httpx.Response], str]:
        app = create_app(api.settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                alone = [await client.post(f"{V1}/predict", json=b, headers=headers) for b in bodies]
                at_once = (client.post(f"{V1}/predict", json=b, headers=headers) for b in bodies)
                together = await asyncio.gather(*at_once)
                metrics = (await client.get(f"{V1}/metrics")).text
        return alone, list(together), metrics

    alone, together, metrics = asyncio.run(main())
    assert [r.status_code for r in together] == [200] * len(ids) + [404, 200, 200]
    assert [r.json() for r in together] == [r.json() for r in alone]
    assert "C404" in together[len(ids)].json()["error"]
    values = dict(line.split(" ", 1) for line in metrics.splitlines() if not line.startswith("#"))
    passes = int(values["equilibrate_api_predict_passes_total"])
    calls = int(values["equilibrate_api_predict_calls_total"])
    # one pass per call alone; the calls made at once shared a pass (one here, a few at most)
    assert calls == 2 * len(bodies) and passes - len(bodies) <= 3
