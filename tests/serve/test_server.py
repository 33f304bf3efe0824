"""The real server (a subprocess) through the official openai client: results equal to generate()
and to each request run alone, stop strings, n, logprobs, faults, 429, disconnects, shutdown."""
import json
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from minillm.inference import generate, log_softmax

openai = pytest.importorskip("openai")


def post(url, body, headers=None):
    """Raw POST (bytes or a JSON-able object) -> (status, parsed JSON body, headers)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def greedy_text(run_folder, ids, n, stop_ids=(0,)):
    _, model, tok = run_folder
    out = list(generate(model, ids, n, stop=[tok.special_tokens["<|endoftext|>"]]))
    if out and out[-1] == tok.special_tokens["<|endoftext|>"]:
        out = out[:-1]
    return tok.decode(out), out


def chat_ids(tok, messages):
    from minillm.tokenizer import templates
    return list(templates.encode(tok, messages, "chatml", add_generation_prompt=True))


def wait_for(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


# ------------------------------------------------------------------------------- happy paths
def test_models_health_and_page(server):
    assert [m.id for m in server.client().models.list().data] == [server.model]
    assert server.get("/health") == (200, '{"status":"ok"}')
    status, page = server.get("/")
    assert status == 200 and "/v1/chat/completions" in page


@pytest.mark.parametrize("stream", [False, True])
def test_completion_greedy_equals_generate(server, run_folder, stream):
    tok = run_folder[2]
    prompt = "The quick brown fox"
    want, ids = greedy_text(run_folder, tok.encode(prompt), 40)
    c = server.client()
    if stream:
        chunks = list(c.completions.create(model=server.model, prompt=prompt, max_tokens=40, temperature=0,
                                           stream=True, stream_options={"include_usage": True}))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        reason = [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]
        usage = chunks[-1].usage
    else:
        r = c.completions.create(model=server.model, prompt=prompt, max_tokens=40, temperature=0)
        text, reason, usage = r.choices[0].text, r.choices[0].finish_reason, r.usage
    assert text == want
    assert reason == ("length" if len(ids) == 40 else "stop")
    assert (usage.prompt_tokens, usage.completion_tokens) == (len(tok.encode(prompt)), 40 if len(ids) == 40 else len(ids) + 1)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_greedy_equals_generate_on_the_chat_template(server, run_folder, stream):
    _, model, tok = run_folder
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    ends = [tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|im_end|>"]]
    out = list(generate(model, chat_ids(tok, messages), 30, stop=ends))
    want = tok.decode(out[:-1] if out[-1] in ends else out)
    c = server.client()
    if stream:
        chunks = list(c.chat.completions.create(model=server.model, messages=messages, max_tokens=30,
                                                temperature=0, stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    else:
        r = c.chat.completions.create(model=server.model, messages=messages, max_tokens=30, temperature=0)
        text = r.choices[0].message.content
        assert r.choices[0].message.role == "assistant" and r.usage.prompt_tokens == len(chat_ids(tok, messages))
    assert text == want


def test_32_concurrent_streams_each_equal_to_running_alone(server, run_folder):
    tok = run_folder[2]
    rng = np.random.default_rng(0)
    words = "the of a list dict value object class import return".split()
    reqs = [dict(prompt=" ".join(rng.choice(words, size=int(rng.integers(1, 30)))),
                 max_tokens=int(rng.integers(1, 40)), temperature=0.0 if i % 2 else 0.9, seed=i)
            for i in range(32)]
    c = server.client(timeout=120)

    def run(r):
        chunks = c.completions.create(model=server.model, stream=True, **r)
        return "".join(ch.choices[0].text for ch in chunks if ch.choices)
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(run, reqs))
    assert server.metrics()["minillm_requests_finished_total{finish_reason=\"length\"}"] >= 16
    for r, text in zip(reqs, together):
        alone = run(r)
        assert text == alone
        if r["temperature"] == 0:
            assert text == greedy_text(run_folder, tok.encode(r["prompt"]), r["max_tokens"])[0]


def test_stop_strings_cut_across_token_boundaries(server, run_folder):
    tok = run_folder[2]
    prompt = "Return the value of the"
    full, ids = greedy_text(run_folder, tok.encode(prompt), 60)
    pieces = [tok.decode([t]) for t in ids]
    # a stop string that starts inside one token and ends inside a later one
    cut = next(i for i in range(3, len(pieces) - 2) if len(pieces[i]) >= 2 and "\ufffd" not in pieces[i])
    start = len(tok.decode(ids[:cut])) + 1
    stop_s = full[start:start + len(pieces[cut]) + 1]
    want = full[:full.find(stop_s)]
    c = server.client()
    r = c.completions.create(model=server.model, prompt=prompt, max_tokens=60, temperature=0,
                             stop=["@@never@@", stop_s])
    assert (r.choices[0].text, r.choices[0].finish_reason) == (want, "stop")
    chunks = list(c.completions.create(model=server.model, prompt=prompt, max_tokens=60, temperature=0,
                                       stop=stop_s, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == want
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_n3_choices_equal_single_requests_with_seed_plus_i(server):
    c = server.client()
    kw = dict(model=server.model, prompt="import os and sys", max_tokens=12, temperature=1.0, top_p=0.9)
    r = c.completions.create(n=3, seed=100, **kw)
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2] and r.usage.completion_tokens == 36
    singles = [c.completions.create(seed=100 + i, **kw).choices[0].text for i in range(3)]
    assert [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)] == singles
    assert len(set(singles)) > 1           # different seeds, different samples
    chunks = list(c.completions.create(n=3, seed=100, stream=True, **kw))
    streamed = ["".join(ch.choices[0].text for ch in chunks if ch.choices[0].index == i) for i in range(3)]
    assert streamed == singles


def test_logprobs_equal_the_models_log_softmax(server, run_folder):
    _, model, tok = run_folder
    prompt_ids = tok.encode("def function(arguments):")
    out = list(generate(model, prompt_ids, 10))
    lp = log_softmax(model.forward(np.array([prompt_ids + out[:-1]]))[0, len(prompt_ids) - 1:])  # (10, V)
    c = server.client()
    r = c.completions.create(model=server.model, prompt=prompt_ids, max_tokens=10, temperature=0, logprobs=3)
    got = r.choices[0].logprobs
    np.testing.assert_allclose(got.token_logprobs, lp[np.arange(10), out], atol=1e-4)
    for i, alts in enumerate(got.top_logprobs):
        top = np.argsort(-lp[i], kind="stable")[:3]
        want = {}
        for t in top:       # the legacy format maps text -> logprob: equal texts keep the likelier
            want.setdefault(tok.decode([t]), lp[i, t])
        assert alts.keys() == want.keys()
        np.testing.assert_allclose([alts[k] for k in want], list(want.values()), atol=1e-4)
    messages = [{"role": "user", "content": "hello"}]
    ids = chat_ids(tok, messages)
    out = list(generate(model, ids, 6))
    lp = log_softmax(model.forward(np.array([ids + out[:-1]]))[0, len(ids) - 1:])
    r = c.chat.completions.create(model=server.model, messages=messages, max_tokens=6, temperature=0,
                                  logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    np.testing.assert_allclose([e.logprob for e in content], lp[np.arange(len(content)), out[:len(content)]], atol=1e-4)
    assert all(len(e.top_logprobs) == 2 and e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob for e in content)


def test_sampling_extras_are_applied(server):
    c = server.client()
    kw = dict(model=server.model, prompt="the the the", max_tokens=20, temperature=0)
    plain = c.completions.create(**kw).choices[0].text
    penalized = c.completions.create(frequency_penalty=2.0, presence_penalty=2.0, **kw).choices[0].text
    assert penalized != plain
    r = c.completions.create(extra_body={"top_k": 1, "min_p": 0.5, "repetition_penalty": 1.3},
                             **{**kw, "temperature": 1.0, "seed": 5})
    greedy_rep = c.completions.create(extra_body={"repetition_penalty": 1.3}, **kw)
    assert r.choices[0].text == greedy_rep.choices[0].text      # top_k=1 is greedy


def test_metrics_parse_as_prometheus(server):
    parser = pytest.importorskip("prometheus_client.parser", reason="checks the text format with prometheus_client")
    families = {f.name: f for f in parser.text_string_to_metric_families(server.get("/metrics")[1])}
    for name in ("minillm_requests_running", "minillm_requests_waiting", "minillm_kv_cache_usage",
                 "minillm_prefix_cache_hit_rate", "minillm_generation_tokens", "minillm_time_to_first_token_seconds",
                 "minillm_inter_token_latency_seconds"):
        assert name in families, name
    assert families["minillm_time_to_first_token_seconds"].type == "histogram"
    m = server.metrics()
    assert m["minillm_generation_tokens_total"] > 0 and 0 <= m["minillm_kv_cache_usage"] <= 1
    assert m["minillm_time_to_first_token_seconds_count"] > 0 and m["minillm_prefix_cache_hit_rate"] > 0


# ------------------------------------------------------------------------------- faults
BAD = [
    (b"{not json", 400, None),
    (b'"a string"', 400, None),
    ({"prompt": "hi", "max_tokens": 5}, 400, "model"),
    ({"model": "M", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "M", "prompt": "hi", "max_tokens": "5"}, 400, "max_tokens"),
    ({"model": "M", "prompt": "hi", "temperature": 2.5}, 400, "temperature"),
    ({"model": "M", "prompt": "hi", "temperature": True}, 400, "temperature"),
    ({"model": "M", "prompt": "hi", "top_p": 0}, 400, "top_p"),
    ({"model": "M", "prompt": "hi", "n": 0}, 400, "n"),
    ({"model": "M", "prompt": "hi", "n": 1000}, 400, "n"),
    ({"model": "M", "prompt": "hi", "presence_penalty": -3}, 400, "presence_penalty"),
    ({"model": "M", "prompt": "hi", "logprobs": 9}, 400, "logprobs"),
    ({"model": "M", "prompt": "hi", "stop": [""]}, 400, "stop"),
    ({"model": "M", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"model": "M", "prompt": "hi", "seed": 1.5}, 400, "seed"),
    ({"model": "M", "prompt": "hi", "top_k": -5}, 400, "top_k"),
    ({"model": "M", "prompt": "hi", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": "M", "prompt": ""}, 400, "prompt"),
    ({"model": "M", "prompt": [1, 2, 99999]}, 400, "prompt"),
    ({"model": "M", "prompt": "<|endoftext|> is special"}, 400, "prompt"),
    ({"model": "M", "prompt": "word " * 300}, 400, "prompt"),
    ({"model": "M", "prompt": "hi", "max_tokens": 255}, 400, "max_tokens"),
    ({"model": "M", "prompt": "hi", "logit_bias": {"5": 3}}, 400, "logit_bias"),
    ({"model": "nope", "prompt": "hi"}, 404, "model"),
]
BAD_CHAT = [
    ({"model": "M"}, 400, "messages"),
    ({"model": "M", "messages": []}, 400, "messages"),
    ({"model": "M", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0]"),
    ({"model": "M", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"model": "M", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
    ({"model": "M", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, 400, "top_logprobs"),
    ({"model": "M", "messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 50},
     400, "top_logprobs"),
    ({"model": "M", "messages": [{"role": "user", "content": "<|im_end|>"}]}, 400, "messages"),
    ({"model": "M", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, 400, "tools"),
]


@pytest.mark.parametrize("path,cases", [("/v1/completions", BAD), ("/v1/chat/completions", BAD_CHAT)])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, path, cases):
    for body, status, param in cases:
        if isinstance(body, dict) and body.get("model") == "M":
            body = {**body, "model": server.model}
        got, err, _ = post(server.url + path, body)
        assert got == status, (body, err)
        assert set(err["error"]) == {"message", "type", "param", "code"} and err["error"]["message"]
        assert err["error"]["param"] == param, (body, err)
    assert post(server.url + "/v1/completions", {"model": server.model, "prompt": "hi", "max_tokens": 3})[0] == 200
    assert post(server.url + "/v1/nothing", {})[0] == 404
    assert server.get("/health")[0] == 200


def test_openai_client_sees_typed_errors(server):
    c = server.client()
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="gpt-4", prompt="hi")
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        c.completions.create(model=server.model, prompt="word " * 300)


def test_api_key(serve):
    s = serve("--api-key", "sesame")
    with pytest.raises(openai.AuthenticationError):
        s.client(api_key="wrong").models.list()
    assert post(s.url + "/v1/completions", {"model": s.model, "prompt": "x"})[0] == 401
    r = s.client(api_key="sesame").completions.create(model=s.model, prompt="x", max_tokens=2)
    assert len(r.choices) == 1 and s.get("/health")[0] == 200      # health needs no key


def long_stream(s, max_tokens=3800):
    """A streaming request that takes seconds; -> (response, first chunk)."""
    c = s.client(timeout=120)
    stream = c.completions.create(model=s.model, prompt="long", max_tokens=max_tokens, temperature=0, stream=True,
                                  extra_body={"ignore_eos": True})
    return stream, next(iter(stream))


def test_disconnect_mid_stream_aborts_and_frees_blocks(serve):
    s = serve("--max-model-len", "4096", "--kv-blocks", "300", "--max-num-seqs", "4")
    stream, first = long_stream(s)
    wait_for(lambda: s.metrics()["minillm_kv_cache_usage"] > 0)
    stream.close()                                  # the client goes away mid-stream
    wait_for(lambda: s.metrics().get('minillm_requests_finished_total{finish_reason="abort"}') == 1)
    m = s.metrics()
    assert m["minillm_kv_cache_usage"] == 0 and m["minillm_requests_running"] == 0
    assert m["minillm_generation_tokens_total"] < 3800
    assert s.client().completions.create(model=s.model, prompt="x", max_tokens=2).choices[0].finish_reason


def test_full_queue_answers_429_with_retry_after(serve):
    s = serve("--max-model-len", "4096", "--kv-blocks", "600", "--max-num-seqs", "1", "--max-queue", "1")
    first, _ = long_stream(s)
    c = s.client()
    second = c.completions.create(model=s.model, prompt="q", max_tokens=3800, stream=True,   # queued
                                  extra_body={"ignore_eos": True})
    wait_for(lambda: s.metrics()["minillm_requests_waiting"] == 1)
    with pytest.raises(openai.RateLimitError) as e:
        c.completions.create(model=s.model, prompt="third", max_tokens=5)
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.body["code"] == "queue_full"
    assert s.metrics()["minillm_requests_rejected_total"] == 1
    first.close()
    second.close()
    wait_for(lambda: s.metrics()["minillm_requests_running"] + s.metrics()["minillm_requests_waiting"] == 0)
    assert s.metrics()["minillm_kv_cache_usage"] == 0
    assert c.completions.create(model=s.model, prompt="x", max_tokens=2).choices[0].text is not None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_gracefully_with_exit_0(serve, sig):
    s = serve("--max-model-len", "4096", "--kv-blocks", "300")
    stream, _ = long_stream(s)
    assert s.stop(sig) == 0
    with pytest.raises(openai.APIError, match="shutting down"):   # the open stream ends with an error event
        for _ in stream:
            pass
