"""The one thread that owns the Engine. The HTTP side never touches the engine: it puts commands on
a thread-safe queue ("add" a job, "abort" a job, "stop") and reads events from each job's own
asyncio queue, which this thread fills through loop.call_soon_threadsafe after every engine step:
  ("started",)                       the engine accepted the request
  ("error", APIError)                it did not (bad prompt...), or the request failed later
  ("delta", [(index, text, logprob entries, finish_reason or None)])   new text of some choices
  ("done", prompt_tokens, completion_tokens)                            every choice has finished
Between steps the thread turns new token ids into text (text.TextStream: whole characters only,
stop strings cut across token boundaries, a matched stop string aborts the engine request at once)
and records the metrics. Finished requests are released from the engine, so memory stays bounded.
"""
import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from ..inference.engine import FINISHED
from .protocol import APIError
from .text import TextStream, token_text

log = logging.getLogger("minillm.serve")


@dataclass
class Choice:
    rid: int                     # engine request id
    stream: TextStream
    sent: int = 0                # output tokens already turned into events
    last: float = None           # perf_counter of its previous token
    finish_reason: str = None


@dataclass
class Job:
    """One HTTP request: its prompt ids, validated Params, and the queue its events go to."""
    loop: asyncio.AbstractEventLoop
    prompt_ids: list
    params: object
    stop_ids: list
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrival: float = field(default_factory=time.perf_counter)
    choices: list = field(default_factory=list)
    first_token: bool = False
    released: bool = False       # the HTTP side gave its admission slot back

    def emit(self, event):
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class EngineThread:
    def __init__(self, engine, tokenizer, metrics):
        self.engine, self.tokenizer, self.metrics = engine, tokenizer, metrics
        self.inbox = queue.Queue()
        self.jobs = {}                                   # id(job) -> job
        self.thread = threading.Thread(target=self._run, name="minillm-engine", daemon=True)

    # -- called from the HTTP thread
    def start(self):
        self.thread.start()

    def submit(self, job):
        self.inbox.put(("add", job))

    def abort(self, job):
        self.inbox.put(("abort", job))

    def request_stop(self):
        """Stop soon (safe in a signal handler): running requests end with a 503 error event."""
        self.inbox.put(("stop", None))

    def stop(self, timeout=30.0):
        self.request_stop()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def alive(self):
        return self.thread.is_alive()

    # -- the engine thread
    def _run(self):
        while self._drain(block=not self.engine.has_unfinished()):
            if self.engine.has_unfinished():
                self._step()
            self._publish()
        for job in list(self.jobs.values()):     # shutting down: end what is still running
            self._drop(job, "abort")
            job.emit(("error", APIError(503, "the server is shutting down", type_="server_error")))

    def _drain(self, block):
        """Apply queued commands; wait for one if the engine is idle. False once told to stop."""
        while True:
            try:
                cmd, job = self.inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if cmd == "stop":
                return False
            if cmd == "add":
                self._add(job)
            elif id(job) in self.jobs:
                self._drop(job, "abort")

    def _step(self):
        try:
            self.engine.step()
        except Exception:   # the step's requests were ended with "error"; the server goes on
            log.exception("engine step failed")
            if not any(self.engine.requests[c.rid].finish_reason == "error"
                       for j in self.jobs.values() for c in j.choices):
                for job in list(self.jobs.values()):   # nothing was ended: the failure is not theirs
                    for c in job.choices:              # alone, so end everything rather than spin
                        self.engine.requests[c.rid].error = "the engine could not schedule it"
                        self.engine.abort(c.rid, "error")
        self.metrics.inc("minillm_engine_steps_total")

    def _add(self, job):
        p, e = job.params, self.engine
        try:
            if p.n > 1:
                rids = e.add_parallel_requests(job.prompt_ids, p.n, p.max_tokens, seed=p.seed,
                                               stop=job.stop_ids or None, **p.sampling())
            else:
                rids = [e.add_request(job.prompt_ids, p.max_tokens, seed=p.seed, stop=job.stop_ids or None,
                                      **p.sampling())]
        except ValueError as err:
            name = str(err).split(":")[0]
            param = {"max_new_tokens": "max_tokens", "prompt_ids": "prompt"}.get(name, name)
            job.emit(("error", APIError(400, str(err), param)))
            return
        except Exception as err:      # a bug must not end the thread that serves everyone
            log.exception("could not add a request")
            job.emit(("error", APIError(500, f"{type(err).__name__}: {err}", type_="server_error")))
            return
        job.choices = [Choice(r, TextStream(self.tokenizer, p.stop)) for r in rids]
        self.jobs[id(job)] = job
        self.metrics.inc("minillm_prompt_tokens_total", len(job.prompt_ids))
        job.emit(("started",))

    def _drop(self, job, reason):
        for c in job.choices:
            self.engine.abort(c.rid, reason)
        self._release(job, reason)

    def _release(self, job, reason):
        for c in job.choices:
            self.engine.release(c.rid)
        self.jobs.pop(id(job), None)
        self.metrics.inc("minillm_requests_finished_total", label=reason)
        self.metrics.observe("minillm_request_latency_seconds", time.perf_counter() - job.arrival)

    def _publish(self):
        """Events for every job with new tokens; finished jobs are released."""
        now = time.perf_counter()
        for job in list(self.jobs.values()):
            try:
                deltas = [d for d in (self._advance(job, i, c, now) for i, c in enumerate(job.choices)) if d]
            except Exception as e:    # e.g. the tokenizer cannot decode an id: this request alone fails
                log.exception("request failed")
                self._drop(job, "error")
                job.emit(("error", APIError(500, f"generation failed: {type(e).__name__}: {e}",
                                            type_="server_error")))
                continue
            failed = [self.engine.requests[c.rid].error for c in job.choices if c.finish_reason == "error"]
            if failed:    # one failing choice fails the request; the others are stopped
                self._drop(job, "error")
                job.emit(("error", APIError(500, f"generation failed: {failed[0]}", type_="server_error")))
                continue
            if deltas:
                job.emit(("delta", deltas))
            if all(c.finish_reason for c in job.choices):
                completion = sum(len(self.engine.requests[c.rid].output) for c in job.choices)
                self._release(job, job.choices[0].finish_reason)
                job.emit(("done", len(job.prompt_ids), completion))
        self._gauges()

    def _advance(self, job, i, c, now):  # -> (index, text, logprob entries, finish_reason) or None
        if c.finish_reason:
            return None
        req = self.engine.requests[c.rid]
        new, done = req.output[c.sent:], req.state == FINISHED
        if not new and not done:
            return None
        self._timing(job, c, len(new), now)
        keep = len(new) - (req.stop_len if done and req.finish_reason == "stop" else 0)
        entries = None
        if req.logprobs is not None:
            entries = [self._logprob_entry(tok, lp) for tok, lp in
                       zip(new[:keep], req.token_logprobs[c.sent:c.sent + keep])]
        c.sent = len(req.output)
        text = c.stream.push(new[:keep])
        if c.stream.stopped:          # a stop string: the engine request ends now
            self.engine.abort(c.rid, "stop")
            c.finish_reason = "stop"
        elif done:
            text += c.stream.finish()
            c.finish_reason = req.finish_reason
        return i, text, entries, c.finish_reason

    def _logprob_entry(self, tok, lp):  # -> (token text, logprob, [(alt text, alt logprob)])
        chosen, ids, lps = lp
        return (token_text(self.tokenizer, tok)[0], chosen,
                [(token_text(self.tokenizer, t)[0], float(x)) for t, x in zip(ids, lps)])

    def _timing(self, job, c, n, now):
        if n == 0:
            return
        if not job.first_token:
            job.first_token = True
            self.metrics.observe("minillm_time_to_first_token_seconds", now - job.arrival)
        elif c.last is not None:
            for _ in range(n):
                self.metrics.observe("minillm_inter_token_latency_seconds", (now - c.last) / n)
        c.last = now
        self.metrics.inc("minillm_generation_tokens_total", n)

    def _gauges(self):
        e, a = self.engine, self.engine.cache.allocator
        self.metrics.set("minillm_requests_running", len(e.running))
        self.metrics.set("minillm_requests_waiting", len(e.waiting) + len(e.swapped))
        self.metrics.set("minillm_kv_cache_usage", a.num_used() / a.num_blocks)
        self.metrics.set("minillm_prefix_cache_hit_rate", a.hit_rate())
