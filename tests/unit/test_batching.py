"""Micro-batching in an API worker: requests that arrive together are run together, each caller
gets its own result or its own error, and a quiet API runs each request at once."""

from __future__ import annotations

import asyncio

import pytest

from serving.batching import MicroBatcher


def _recording(fail_on: set[int] | None = None):
    calls: list[list[int]] = []

    def run(items: list[int]) -> list:
        calls.append(list(items))
        return [ValueError(f"item {i} is bad") if i in (fail_on or set()) else i * 10 for i in items]

    return run, calls


def test_requests_that_arrive_together_run_as_one_batch_in_order():
    run, calls = _recording()
    batcher = MicroBatcher(run, max_size=8)

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3, 4]] and (batcher.batches, batcher.items) == (1, 5)


def test_a_quiet_api_runs_each_request_alone_and_batches_never_exceed_the_limit():
    run, calls = _recording()
    batcher = MicroBatcher(run, max_size=3)

    async def main():
        alone = [await batcher.submit(i) for i in range(2)]  # one after the other: a batch each
        together = await asyncio.gather(*(batcher.submit(i) for i in range(10, 17)))
        return alone, together

    alone, together = asyncio.run(main())
    assert alone == [0, 10] and together == [100, 110, 120, 130, 140, 150, 160]
    assert calls[:2] == [[0], [1]]
    assert [len(c) for c in calls[2:]] == [3, 3, 1] and sum(calls[2:], []) == list(range(10, 17))


def test_an_error_reaches_its_own_caller_only():
    run, _ = _recording(fail_on={2})
    batcher = MicroBatcher(run)

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)

    out = asyncio.run(main())
    assert out[:2] == [0, 10] and out[3] == 30
    assert isinstance(out[2], ValueError) and "item 2 is bad" in str(out[2])


def test_a_failed_batch_reaches_every_caller_and_the_next_batch_still_runs():
    state = {"calls": 0}

    def run(items):
        state["calls"] += 1
        if state["calls"] == 1:
            raise RuntimeError("encoder down")
        return items

    batcher = MicroBatcher(run)

    async def main():
        first = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        second = await batcher.submit(7)
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "encoder down" in str(e) for e in first) and second == 7


def test_a_caller_that_went_away_does_not_break_the_batch():
    run, calls = _recording()
    batcher = MicroBatcher(run)

    async def main():
        gone = asyncio.ensure_future(batcher.submit(1))
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)  # both submitted; the batch has not run yet
        gone.cancel()  # the client disconnected before its batch ran
        return await kept, gone.cancelled()

    assert asyncio.run(main()) == (20, True)
    assert calls == [[1, 2]]


def test_a_run_that_returns_the_wrong_number_of_results_is_an_error_for_every_caller():
    batcher = MicroBatcher(lambda items: items[:-1])

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(2)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "returned 1 results for 2 items" in str(e) for e in out)
    with pytest.raises(ValueError, match="max_size 0"):
        MicroBatcher(lambda items: items, max_size=0)
