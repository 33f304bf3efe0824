"""The engine thread without HTTP: events per job, and a request that fails (here: its tokenizer
cannot decode a token) fails alone while the others finish and the thread keeps serving."""
import asyncio

import numpy as np

from minillm import ModelConfig, Transformer
from minillm.inference import Engine, generate
from minillm.serve.engine_thread import EngineThread, Job
from minillm.serve.metrics import Metrics
from minillm.serve.protocol import Params


class Bytes:
    """Token id = byte; decoding id `bad` raises."""
    def __init__(self, bad=None):
        self.bad = bad

    def decode(self, ids):
        if self.bad in ids:
            raise KeyError(f"no token {self.bad}")
        return bytes(ids).decode("utf-8", errors="replace")


async def collect(job):
    events = []
    while not events or events[-1][0] not in ("done", "error"):
        events.append(await job.events.get())
    return events


def test_failing_request_fails_alone_and_the_thread_goes_on():
    model = Transformer(ModelConfig.preset("llama-tiny"), seed=1)
    prompts = [[1, 2, 3], [9, 8, 7, 6], [5]]
    alone = [list(generate(model, p, 12)) for p in prompts]
    bad = alone[1][5]                          # request 1 hits this id at its 6th token
    assert bad not in alone[0] and bad not in alone[2]
    worker = EngineThread(Engine(model, block_size=4), Bytes(bad), Metrics())
    worker.start()

    async def main():
        loop = asyncio.get_running_loop()
        jobs = [Job(loop, p, Params(model="m", max_tokens=12, temperature=0.0), []) for p in prompts]
        for j in jobs:
            worker.submit(j)
        results = await asyncio.gather(*[collect(j) for j in jobs])
        again = Job(loop, prompts[0], Params(model="m", max_tokens=12, temperature=0.0), [])
        worker.submit(again)
        return results, await collect(again)
    try:
        results, again = asyncio.run(main())
    finally:
        worker.stop()
    assert not worker.alive()
    assert results[1][-1][0] == "error" and "no token" in results[1][-1][1].message
    for i in (0, 2):
        text = "".join(t for ev in results[i] if ev[0] == "delta" for _, t, _, _ in ev[1])
        assert results[i][0] == ("started",) and results[i][-1] == ("done", len(prompts[i]), 12)
        assert text == bytes(alone[i]).decode("utf-8", errors="replace")
    assert again[-1][0] == "done"
    assert worker.engine.cache.allocator.num_used() == 0 and not worker.engine.requests
