"""The OpenAI HTTP API as the official `openai` client speaks it: request validation and the JSON
of responses and stream chunks (https://platform.openai.com/docs/api-reference, /v1/completions and
/v1/chat/completions). Pure functions of dicts; app.py does the HTTP.

Every bad field is an APIError(400) naming the field (`param`), what was expected and what came,
in OpenAI's error shape {"error": {"message", "type", "param", "code"}}. Besides OpenAI's fields the
requests accept top_k, min_p, repetition_penalty and ignore_eos (as vLLM's server does).
"""
import math
import time
import uuid
from dataclasses import dataclass, field

MAX_N = 16
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20      # chat; completions' legacy `logprobs` allows 0..5
CHAT_ROLES = ("system", "developer", "user", "assistant")


class APIError(Exception):
    """An HTTP error with an OpenAI-style JSON body."""

    def __init__(self, status, message, param=None, type_="invalid_request_error", code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Params:
    """One validated generation request, whichever endpoint it came through."""
    model: str
    max_tokens: int = None            # None: up to the end of the context window
    n: int = 1
    temperature: float = 1.0
    top_p: float = None
    top_k: int = None
    min_p: float = None
    repetition_penalty: float = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = None
    stop: list = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    logprobs: int = None              # None: off; k: the chosen token's log-prob and k alternatives
    ignore_eos: bool = False          # go on past the end-of-text token (benchmarks; as in vLLM)

    def sampling(self):
        """Keyword arguments for Engine.add_request."""
        return dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p,
                    repetition_penalty=self.repetition_penalty, presence_penalty=self.presence_penalty,
                    frequency_penalty=self.frequency_penalty, logprobs=self.logprobs)


def _kind(v):
    return "null" if v is None else type(v).__name__


def number(body, name, lo, hi, default, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            v < lo or v > hi or (lo_open and v == lo):
        rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise APIError(400, f"{name}: expected a number in {rng}, got {v!r}", name)
    return float(v)


def integer(body, name, lo, hi, default):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise APIError(400, f"{name}: expected an integer in [{lo}, {hi}], got {v!r}", name)
    return v


def boolean(body, name, default=False):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise APIError(400, f"{name}: expected a boolean, got {_kind(v)} {v!r}", name)
    return v


def _stop(body):
    v = body.get("stop")
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or len(items) > MAX_STOP or \
            not all(isinstance(s, str) and s for s in items):
        raise APIError(400, f"stop: expected a non-empty string or a list of up to {MAX_STOP} of them, "
                            f"got {v!r}", "stop")
    return items


def _unsupported(body):
    if body.get("logit_bias"):
        raise APIError(400, "logit_bias: not supported by this server, got a non-empty map", "logit_bias")
    if body.get("tools") or body.get("functions"):
        raise APIError(400, "tools: function calling is not supported by this server", "tools")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise APIError(400, f"response_format: only {{'type': 'text'}} is supported, got {fmt!r}",
                       "response_format")
    if body.get("echo"):
        raise APIError(400, "echo: not supported by this server, got true", "echo")
    if body.get("suffix"):
        raise APIError(400, "suffix: not supported by this server", "suffix")
    bo = body.get("best_of")
    if bo is not None and bo != body.get("n", 1):
        raise APIError(400, f"best_of: only best_of == n is supported, got {bo!r}", "best_of")


def parse_common(body, max_model_len):
    """The fields both endpoints share -> Params (logprobs and max_tokens set by the caller)."""
    if not isinstance(body, dict):
        raise APIError(400, f"body: expected a JSON object, got {_kind(body)}", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, f"model: expected a model name (string), got {model!r}", "model")
    _unsupported(body)
    top_k = integer(body, "top_k", -1, 1 << 30, None)
    so = body.get("stream_options")
    stream = boolean(body, "stream")
    if so is not None and (not isinstance(so, dict) or not stream):
        raise APIError(400, "stream_options: expected an object, and only with stream=true, got "
                            f"{so!r}", "stream_options")
    p = Params(model=model, n=integer(body, "n", 1, MAX_N, 1),
               temperature=number(body, "temperature", 0.0, 2.0, 1.0),
               top_p=number(body, "top_p", 0.0, 1.0, None, lo_open=True),
               top_k=None if top_k in (None, -1, 0) else top_k,
               min_p=number(body, "min_p", 0.0, 1.0, None),
               repetition_penalty=number(body, "repetition_penalty", 0.0, 10.0, None, lo_open=True),
               presence_penalty=number(body, "presence_penalty", -2.0, 2.0, 0.0),
               frequency_penalty=number(body, "frequency_penalty", -2.0, 2.0, 0.0),
               seed=integer(body, "seed", -(1 << 63), (1 << 63) - 1, None), stop=_stop(body),
               stream=stream, include_usage=bool(so and boolean(so, "include_usage")),
               ignore_eos=boolean(body, "ignore_eos"))
    if p.seed is not None and p.seed < 0:
        p.seed += 1 << 64          # numpy seeds are non-negative; keep every int64 seed distinct
    p.max_tokens = integer(body, "max_tokens", 1, max_model_len, None)
    return p


def parse_completion(body, max_model_len):
    """-> (Params, prompt: str or list of token ids)."""
    p = parse_common(body, max_model_len)
    if p.max_tokens is None:
        p.max_tokens = 16                 # the API's documented default for completions
    lp = integer(body, "logprobs", 0, 5, None)
    p.logprobs = lp
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]                # a batch of one
    ok_ids = isinstance(prompt, list) and prompt and \
        all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not ok_ids:
        raise APIError(400, "prompt: expected a non-empty string or list of token ids (one prompt per "
                            f"request), got {_kind(prompt)} {str(prompt)[:80]!r}", "prompt")
    return p, prompt


def _message(k, m):
    if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
        raise APIError(400, f"messages[{k}]: expected {{'role': one of {CHAT_ROLES}, 'content': ...}}, "
                            f"got {str(m)[:80]!r}", f"messages[{k}]")
    c = m.get("content")
    if isinstance(c, list):               # content parts: only text ones
        if not all(isinstance(x, dict) and x.get("type") == "text" and isinstance(x.get("text"), str)
                   for x in c):
            raise APIError(400, f"messages[{k}].content: only text parts are supported, got "
                                f"{str(c)[:80]!r}", f"messages[{k}].content")
        c = "".join(x["text"] for x in c)
    if not isinstance(c, str):
        raise APIError(400, f"messages[{k}].content: expected a string, got {_kind(c)}",
                       f"messages[{k}].content")
    return {"role": "system" if m["role"] == "developer" else m["role"], "content": c}


def parse_chat(body, max_model_len):
    """-> (Params, messages [{"role", "content": str}])."""
    p = parse_common(body, max_model_len)
    mct = integer(body, "max_completion_tokens", 1, max_model_len, None)
    p.max_tokens = mct if mct is not None else p.max_tokens
    if boolean(body, "logprobs"):
        p.logprobs = integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, 0)
    elif body.get("top_logprobs") is not None:
        raise APIError(400, "top_logprobs: needs logprobs=true", "top_logprobs")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, f"messages: expected a non-empty list, got {_kind(msgs)}", "messages")
    return p, [_message(k, m) for k, m in enumerate(msgs)]


# ------------------------------------------------------------------------------------ responses
def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_logprobs(entries, offset):
    """Legacy completions format. entries: [(token text, logprob, [(alt text, alt logprob)])]."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for text, lp, alts in entries:
        out["tokens"].append(text)
        out["token_logprobs"].append(lp)
        top = {}
        for t, a in alts:          # tokens whose text is equal (partial UTF-8): the likelier one stays
            top.setdefault(t, a)
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def chat_logprobs(entries):
    """Chat format. entries: [(token text, logprob, [(alt text, alt logprob)], bytes)]."""
    return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8")),
                         "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode("utf-8"))}
                                          for a, alp in alts]}
                        for t, lp, alts in entries], "refusal": None}


def chunk(kind, rid, model, created, choices, usage_=None):
    """One stream event: kind "completion" -> text_completion, "chat" -> chat.completion.chunk."""
    out = {"id": rid, "object": "text_completion" if kind == "completion" else "chat.completion.chunk",
           "created": created, "model": model, "choices": choices}
    if usage_ is not None:
        out["usage"] = usage_
    return out


def now():
    return int(time.time())
