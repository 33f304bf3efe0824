"""The HTTP front end: a Starlette app on uvicorn's asyncio loop.

Why Starlette + uvicorn: it is what FastAPI (and so vLLM's OpenAI server) stands on, minus the
schema layer we do not need; StreamingResponse carries server-sent events, and uvicorn handles
SIGINT/SIGTERM with a graceful drain. aiohttp would do as well; Starlette keeps the handlers plain
`async def f(request)` functions and is tested against uvicorn, httpx and the openai client alike.

Admission is bounded: at most max_num_seqs + max_queue engine requests (n per HTTP request) are
admitted at once; beyond that the answer is 429 with Retry-After, so memory never grows without
bound. A client that disconnects cancels its handler, which aborts its engine requests (their
blocks return to the pool at once).
"""
import asyncio
import contextlib
import json
import os

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from . import protocol
from .engine_thread import EngineThread, Job
from .metrics import Metrics
from .protocol import APIError
from .text import chat_prompt_ids, end_token_ids

STATIC = os.path.join(os.path.dirname(__file__), "static")


class EventStream(StreamingResponse):
    """Server-sent events that stop (and so abort their request) the moment the client goes away:
    the body is streamed while a second task listens for http.disconnect, whatever ASGI version."""

    async def __call__(self, scope, receive, send):
        async with anyio.create_task_group() as tg:
            async def body():
                try:
                    await self.stream_response(send)
                except OSError:
                    pass              # the socket closed while writing: same as a disconnect
                tg.cancel_scope.cancel()
            tg.start_soon(body)
            await self.listen_for_disconnect(receive)
            tg.cancel_scope.cancel()


class Server:
    """State shared by the handlers: the model's name, limits, the engine thread and metrics."""

    def __init__(self, engine, tokenizer, model_name, max_model_len, max_queue=256, api_key=None):
        self.engine, self.tokenizer, self.model_name = engine, tokenizer, model_name
        self.max_model_len, self.api_key = int(max_model_len), api_key
        self.capacity = engine.max_num_seqs + int(max_queue)
        self.admitted = 0                  # engine requests admitted and not yet released
        self.metrics = Metrics()
        self.worker = EngineThread(engine, tokenizer, self.metrics)
        self.stop_ids = end_token_ids(tokenizer)

    # -- helpers
    def check_auth(self, request):
        if self.api_key and request.headers.get("authorization", "") != f"Bearer {self.api_key}":
            raise APIError(401, "Incorrect API key provided: send 'Authorization: Bearer <key>'", None,
                           "invalid_request_error", "invalid_api_key")

    async def body(self, request):
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"body: expected JSON, could not parse it ({e})") from None

    def prompt_ids(self, kind, prompt):
        try:
            if kind == "chat":
                return chat_prompt_ids(self.tokenizer, prompt)
            return list(prompt) if isinstance(prompt, list) else list(self.tokenizer.encode(prompt))
        except (ValueError, TypeError) as e:
            raise APIError(400, f"{'messages' if kind == 'chat' else 'prompt'}: {e}",
                           "messages" if kind == "chat" else "prompt") from None

    def fit(self, params, n_prompt, kind):
        """The context window holds the prompt and max_tokens (default: all that is left)."""
        room = self.max_model_len - n_prompt
        if room < 1:
            raise APIError(400, f"This model's maximum context length is {self.max_model_len} tokens; "
                                f"the prompt has {n_prompt} tokens", "messages" if kind == "chat" else "prompt",
                           code="context_length_exceeded")
        if params.max_tokens is None:
            params.max_tokens = room
        elif params.max_tokens > room:
            raise APIError(400, f"max_tokens: prompt ({n_prompt} tokens) + max_tokens ({params.max_tokens}) "
                                f"exceeds the maximum context length {self.max_model_len}", "max_tokens",
                           code="context_length_exceeded")

    def admit(self, ids, params):
        if not self.worker.alive():
            raise APIError(503, "the server is shutting down", None, "server_error")
        if self.admitted + params.n > self.capacity:
            self.metrics.inc("minillm_requests_rejected_total")
            raise APIError(429, f"the server is busy ({self.admitted} requests admitted, room for "
                                f"{self.capacity}); retry later", None, "rate_limit_error", "queue_full")
        self.admitted += params.n
        job = Job(asyncio.get_running_loop(), ids, params, [] if params.ignore_eos else self.stop_ids)
        self.worker.submit(job)
        return job

    def release(self, job):
        """Give the admission slot back (once); abort the engine requests if they still run."""
        if not job.released:
            job.released = True
            self.admitted -= job.params.n
            self.worker.abort(job)     # a no-op in the engine thread once the job has finished

    # -- the two generation endpoints
    async def generate(self, request, kind):
        self.check_auth(request)
        body = await self.body(request)
        parse = protocol.parse_chat if kind == "chat" else protocol.parse_completion
        params, prompt = parse(body, self.max_model_len)
        if params.model != self.model_name:
            raise APIError(404, f"model: '{params.model}' does not exist; this server serves "
                                f"'{self.model_name}'", "model", code="model_not_found")
        ids = self.prompt_ids(kind, prompt)
        self.fit(params, len(ids), kind)
        job = self.admit(ids, params)
        streaming = False
        try:
            event = await job.events.get()
            if event[0] == "error":
                raise event[1]
            rid = protocol.new_id("chatcmpl" if kind == "chat" else "cmpl")
            if params.stream:
                streaming = True
                return EventStream(self.sse(job, kind, rid), media_type="text/event-stream",
                                   headers={"Cache-Control": "no-cache"})
            result = await self.collect(job, kind, rid, request)
            return JSONResponse(result) if result is not None else Response(status_code=499)
        finally:
            if not streaming:
                self.release(job)

    def choice_json(self, kind, index, text, entries, reason, offset, first=False):
        if kind == "chat":
            lp = protocol.chat_logprobs(entries) if entries is not None else None
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
        lp = protocol.completion_logprobs(entries, offset) if entries is not None else None
        return {"index": index, "text": text, "logprobs": lp, "finish_reason": reason}

    async def sse(self, job, kind, rid):
        p, created = job.params, protocol.now()
        offsets = [0] * p.n

        def event(choices, usage=None):
            data = protocol.chunk(kind, rid, self.model_name, created, choices, usage)
            return f"data: {json.dumps(data)}\n\n"
        try:
            if kind == "chat":   # the first chunk of each choice opens the assistant's message
                for i in range(p.n):
                    yield event([self.choice_json(kind, i, "", None, None, 0, first=True)])
            while True:
                ev = await job.events.get()
                if ev[0] == "delta":
                    for i, text, entries, reason in ev[1]:   # one choice per chunk, as OpenAI does
                        if text or entries or reason:   # a token may complete no character yet
                            yield event([self.choice_json(kind, i, text, entries, reason, offsets[i])])
                        offsets[i] += len(text)
                elif ev[0] == "done":
                    if p.include_usage:
                        yield event([], protocol.usage(ev[1], ev[2]))
                    break
                else:
                    yield f"data: {json.dumps(ev[1].body())}\n\n"
                    break
            yield "data: [DONE]\n\n"
        finally:     # also when the client went away: the task was cancelled inside the await above
            self.release(job)

    async def collect(self, job, kind, rid, request):
        """Wait for the whole answer; a client that disconnects meanwhile aborts it."""
        p = job.params
        texts, entries, reasons = [""] * p.n, [[] for _ in range(p.n)], [None] * p.n
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            while True:
                get = asyncio.ensure_future(job.events.get())
                await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    return None           # the client went away: nobody to answer
                ev = get.result()
                if ev[0] == "error":
                    raise ev[1]
                if ev[0] == "done":
                    break
                for i, text, ent, reason in ev[1]:
                    texts[i] += text
                    entries[i] += ent or []
                    reasons[i] = reason or reasons[i]
        finally:
            gone.cancel()
        want_lp = p.logprobs is not None
        if kind == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                        "logprobs": protocol.chat_logprobs(entries[i]) if want_lp else None,
                        "finish_reason": reasons[i]} for i in range(p.n)]
        else:
            choices = [{"index": i, "text": texts[i], "finish_reason": reasons[i],
                        "logprobs": protocol.completion_logprobs(entries[i], 0) if want_lp else None}
                       for i in range(p.n)]
        return {"id": rid, "object": "chat.completion" if kind == "chat" else "text_completion",
                "created": protocol.now(), "model": self.model_name, "choices": choices,
                "usage": protocol.usage(ev[1], ev[2])}

    # -- the other endpoints
    async def models(self, request):
        self.check_auth(request)
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": protocol.now(), "owned_by": "minillm",
             "max_model_len": self.max_model_len}]})

    async def health(self, request):
        if not self.worker.alive():
            return JSONResponse({"status": "engine thread stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_page(self, request):
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def page(self, request):
        with open(os.path.join(STATIC, "chat.html"), encoding="utf-8") as f:
            return HTMLResponse(f.read())


async def _disconnected(request):
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _api_error(request, exc):
    return JSONResponse(exc.body(), status_code=exc.status,
                        headers={"Retry-After": "1"} if exc.status == 429 else None)


async def _http_error(request, exc):
    return JSONResponse(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").body(),
                        status_code=exc.status_code)


async def _internal_error(request, exc):
    return JSONResponse(APIError(500, f"internal error: {type(exc).__name__}: {exc}", None,
                                 "server_error").body(), status_code=500)


def build_app(server):
    """The Starlette application; the engine thread runs while the app does (lifespan)."""
    async def completions(request):
        return await server.generate(request, "completion")

    async def chat(request):
        return await server.generate(request, "chat")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        server.worker.start()
        yield
        server.worker.stop()

    routes = [Route("/", server.page), Route("/health", server.health), Route("/metrics", server.metrics_page),
              Route("/v1/models", server.models), Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat, methods=["POST"])]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
