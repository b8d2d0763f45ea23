"""The `score_telemetry` agent under faust's test_context(): batching, acknowledgement after the write, dead
letters. Real Redis and broker (for the outbox marks); outputs are captured instead of produced."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from model.bundle import load_bundle
from model.serving import Geometry
from stream.app import Checked, Runtime, build_app, check_services
from stream.settings import Settings
from tests.stream_support import Names, random_bundle

pytestmark = pytest.mark.integration


class CapturingRuntime(Runtime):
    """Runtime whose publisher sends into a list instead of the producer (not started in test_context)."""

    sent: list[tuple[str, bytes, dict[str, Any]]]

    async def ready(self, send: Any, send_batch: Any = None) -> Any:
        self.sent = getattr(self, "sent", [])
        offsets = iter(range(10**9))

        async def capture(topic: str, key: bytes, value: bytes, partition: int) -> Any:
            self.sent.append((topic, key, json.loads(value)))

            async def offset() -> int:
                return next(offsets)

            return offset()

        return await super().ready(capture)


@pytest.fixture
def agent_app(services: Any, unique: str, tmp_path: Path) -> Any:
    names = Names(unique, partitions=2)
    env = names.env(services, random_bundle(tmp_path / "b"))
    env["ANOMALYBERT_KAFKA__CONSUMER"] = "faust"  # the agent; the aiokafka consumer is tested on real workers
    settings = Settings.model_validate(_nested(env))
    bundle = load_bundle(settings.model.path)
    partitions = asyncio.run(check_services(settings))
    checked = Checked(bundle, Geometry(16, 1, 15, 1), partitions)
    runtime = CapturingRuntime(settings, checked)
    app, runtime = build_app(settings, checked, runtime)
    return app, runtime, names


def _nested(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in env.items():
        parts = k.removeprefix("ANOMALYBERT_").lower().split("__")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


async def test_agent_acks_only_after_the_batch_is_written(agent_app: Any) -> None:
    app, runtime, names = agent_app
    agent = app.agents["score_telemetry"]
    gate = asyncio.Event()
    real_ready = runtime.ready

    async def gated_ready(send: Any, send_batch: Any = None) -> Any:
        processor = await real_ready(send, send_batch)
        original = processor.write

        async def write(staged: Any) -> list[str]:
            await gate.wait()  # hold the batch "in processing", before its write
            return await original(staged)

        processor.write = write
        return processor

    runtime.ready = gated_ready

    async with agent.test_context() as ctx:
        events = []
        for i in range(20):
            msg = {"series_id": "a", "ts": i, "value": float(i % 5)}
            events.append(await ctx.put(json.dumps(msg).encode(), key=b"a"))
        events.append(await ctx.put(b"{broken", key=b"a"))
        await asyncio.sleep(0.3)
        assert not any(e.message.acked for e in events), "acknowledged before the batch was written"
        gate.set()
        for _ in range(100):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.05)
    await runtime.close()
    assert all(e.message.acked for e in events)
    scores = [m for t, _, m in runtime.sent if t == names.topics["scores"]]
    dead = [m for t, _, m in runtime.sent if t == names.topics["dlq"]]
    assert [m["ts"] for m in scores] == list(range(20 - 15))
    assert len(dead) == 1 and dead[0]["code"] == "invalid_json"
    # The worker's own latency: every event once, each held at least the 0.3 s its batch waited before its write.
    held = {(x.name, x.labels.get("le")): x.value for x in runtime.metrics.in_worker.collect()[0].samples}
    assert held[("anomalybert_in_worker_seconds_count", None)] == len(events)
    assert held[("anomalybert_in_worker_seconds_bucket", "0.25")] == 0


def _wrap_write(runtime: Any, write_with: Any) -> None:
    """Make the processor that `runtime.ready` hands out write through `write_with(original_write, staged)`."""
    real_ready = runtime.ready

    async def ready(send: Any, send_batch: Any = None) -> Any:
        processor = await real_ready(send, send_batch)
        if not getattr(processor, "_wrapped", False):
            original = processor.write

            async def write(staged: Any) -> list[str]:
                return await write_with(original, staged)

            processor.write, processor._wrapped = write, True
        return processor

    runtime.ready = ready


async def test_agent_retries_a_failed_batch_before_acknowledging(agent_app: Any) -> None:
    app, runtime, names = agent_app
    agent = app.agents["score_telemetry"]
    failures = {"left": 2}

    async def fail_twice(original: Any, staged: Any) -> list[str]:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("redis went away")
        return await original(staged)

    _wrap_write(runtime, fail_twice)
    runtime.settings.worker.retry_backoff_s = 0.01

    async with agent.test_context() as ctx:
        events = [
            await ctx.put(json.dumps({"series_id": "b", "ts": i, "value": 1.0}).encode(), key=b"b") for i in range(17)
        ]
        for _ in range(200):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.05)
    await runtime.close()
    assert all(e.message.acked for e in events) and failures["left"] == 0
    assert runtime.metrics.retries._value.get() == 2
    assert [m["ts"] for t, _, m in runtime.sent if t == names.topics["scores"]] == [0, 1]


async def _run_agent(app: Any, runtime: Any, points: dict[str, int], until: int) -> None:
    """Put `points[sid]` points of every series (interleaved) through the agent; wait until all are acked."""
    agent = app.agents["score_telemetry"]
    async with agent.test_context() as ctx:
        events = []
        for i in range(max(points.values())):
            for sid, n in points.items():
                if i < n:
                    msg = {"series_id": sid, "ts": i, "value": float((i * 7) % 11)}
                    events.append(await ctx.put(json.dumps(msg).encode(), key=sid.encode()))
        for _ in range(until):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.05)
        assert all(e.message.acked for e in events)


def _scores(runtime: Any, names: Any, sid: str) -> list[tuple[int, float]]:
    return [(m["ts"], m["score"]) for t, _, m in runtime.sent if t == names.topics["scores"] and m["series_id"] == sid]


def _spy(runtime: Any, on_start: Any, on_settle: Any) -> None:
    """Call on_start(staged, handed_over, ahead) after each `Processor.start` and on_settle(staged, handed_over)
    after each `settle` of the runtime's processor."""
    real_ready = runtime.ready

    async def spying_ready(send: Any, send_batch: Any = None) -> Any:
        processor = await real_ready(send, send_batch)
        if not getattr(processor, "_spied", False):
            start, settle = processor.start, processor.settle

            def spy_start(staged: Any, handed_over: Any, ahead: Any = None) -> None:
                start(staged, handed_over, ahead)
                on_start(staged, handed_over, ahead)

            def spy_settle(staged: Any, handed_over: Any) -> None:
                settle(staged, handed_over)
                on_settle(staged, handed_over)

            processor.start, processor.settle, processor._spied = spy_start, spy_settle, True
        return processor

    runtime.ready = spying_ready


@pytest.mark.parametrize("depth", [2, 3])
async def test_pipelined_batches_give_the_outputs_of_one_batch_at_a_time(agent_app: Any, depth: int) -> None:
    app, runtime, names = agent_app
    runtime.settings.scoring.max_batch = 8  # many batches, each series in most of them
    chained: list[int] = []
    peeked: list[int] = []

    def on_start(staged: Any, handed_over: Any, ahead: Any) -> None:
        chained.append(len(handed_over))
        peeked.append(sum(s.peeked is not None for s in staged.series.values()))

    _spy(runtime, on_start, lambda staged, handed_over: chained.append(len(handed_over)))
    runtime.settings.scoring.pipeline_depth = 1
    await _run_agent(app, runtime, {"p1": 60, "q1": 45}, until=400)
    runtime.settings.scoring.pipeline_depth = depth
    await _run_agent(app, runtime, {"p2": 60, "q2": 45}, until=400)
    await runtime.close()
    for one, two, n in (("p1", "p2", 60), ("q1", "q2", 45)):
        assert [ts for ts, _ in _scores(runtime, names, two)] == list(range(n - 15))  # in order, once each
        a, b = _scores(runtime, names, one), _scores(runtime, names, two)
        assert [ts for ts, _ in a] == [ts for ts, _ in b]
        assert [v for _, v in a] == pytest.approx([v for _, v in b], abs=1e-6)
    assert max(chained) > 0, "no batch pushed onto the states the batch before it left in memory"
    assert max(peeked) > 0, "no batch's windows were peeked from the states of the batch before it"


@pytest.mark.parametrize("depth", [2, 3])
async def test_a_failed_write_in_the_pipeline_redoes_that_batch_and_the_next_from_redis(agent_app: Any,
                                                                                        depth: int) -> None:
    app, runtime, names = agent_app
    runtime.settings.scoring.max_batch = 8
    runtime.settings.scoring.pipeline_depth = depth
    runtime.settings.worker.retry_backoff_s = 0.01
    calls = {"n": 0}

    async def lose_two_replies(original: Any, staged: Any) -> list[str]:
        calls["n"] += 1
        if calls["n"] in (3, 7):  # after the first batches, while later ones are staged on their states
            await original(staged)  # written, then the reply is "lost": the batch is redone
            raise ConnectionError("redis went away")
        return await original(staged)

    _wrap_write(runtime, lose_two_replies)
    await _run_agent(app, runtime, {"r": 70, "s": 50}, until=400)
    await runtime.close()
    assert [ts for ts, _ in _scores(runtime, names, "r")] == list(range(70 - 15))
    assert [ts for ts, _ in _scores(runtime, names, "s")] == list(range(50 - 15))
    assert runtime.metrics.retries._value.get() == 2


async def test_a_third_batch_in_flight_takes_a_state_from_the_batch_two_before(agent_app: Any) -> None:
    """Depth 3, series in blocks of a batch each (a, b, a, b, ...): batch N+2 finds a's state in batch N, still in
    flight, not in N+1; its outputs are those of one batch at a time."""
    app, runtime, names = agent_app
    runtime.settings.scoring.max_batch = 8
    batches: list[set[str]] = []  # each started batch's series, in start order
    from_older: list[str] = []  # series a batch pushed onto a state that the batch just before it did not hold

    def on_start(staged: Any, handed_over: Any, ahead: Any) -> None:
        before = batches[-1] if batches else set()
        batches.append(set(staged.groups))
        from_older.extend(sid for sid in {**handed_over, **(ahead or {})} if sid not in before)

    def on_settle(staged: Any, handed_over: Any) -> None:
        before = batches[-2] if len(batches) > 1 else set()
        from_older.extend(sid for sid in handed_over if sid not in before and sid in staged.groups)

    _spy(runtime, on_start, on_settle)

    async def run(prefix: str) -> None:
        agent = app.agents["score_telemetry"]
        async with agent.test_context() as ctx:
            events = []
            for block in range(12):
                sid = f"{prefix}{'ab'[block % 2]}"
                for i in range(8 * (block // 2), 8 * (block // 2) + 8):
                    msg = {"series_id": sid, "ts": i, "value": float((i * 7) % 11)}
                    events.append(await ctx.put(json.dumps(msg).encode(), key=sid.encode()))
            for _ in range(400):
                if all(e.message.acked for e in events):
                    break
                await asyncio.sleep(0.05)
            assert all(e.message.acked for e in events)

    runtime.settings.scoring.pipeline_depth = 1
    await run("one-")
    from_older.clear()
    runtime.settings.scoring.pipeline_depth = 3
    await run("three-")
    await runtime.close()
    assert from_older, "no batch took a state from the batch two before it"
    for sid in ("a", "b"):
        one, three = _scores(runtime, names, f"one-{sid}"), _scores(runtime, names, f"three-{sid}")
        assert [ts for ts, _ in three] == list(range(48 - 15))  # in order, once each
        assert [ts for ts, _ in one] == [ts for ts, _ in three]
        assert [v for _, v in one] == pytest.approx([v for _, v in three], abs=1e-6)
