"""Request validation: good requests become Params; every bad field is a 400 naming it."""
import pytest
from hypothesis import given, settings, strategies as st

from minillm.serve.metrics import Histogram, Metrics
from minillm.serve.protocol import APIError, parse_chat, parse_completion


def test_completion_defaults_and_extras():
    p, prompt = parse_completion({"model": "m", "prompt": "hi", "top_k": 5, "min_p": 0.1, "stop": "x",
                                  "repetition_penalty": 1.2, "seed": -1, "logprobs": 2}, 100)
    assert prompt == "hi" and p.max_tokens == 16 and p.temperature == 1.0 and p.stop == ["x"]
    assert (p.top_k, p.min_p, p.repetition_penalty, p.logprobs) == (5, 0.1, 1.2, 2)
    assert p.seed == 2**64 - 1            # int64 seeds map one-to-one onto numpy's unsigned ones
    assert parse_completion({"model": "m", "prompt": [[1, 2]], "top_k": -1}, 100)[0].top_k is None


def test_chat_logprobs_and_max_completion_tokens():
    p, msgs = parse_chat({"model": "m", "messages": [{"role": "developer", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "logprobs": True,
        "max_completion_tokens": 7}, 100)
    assert msgs == [{"role": "system", "content": "ab"}] and p.logprobs == 0 and p.max_tokens == 7
    assert parse_chat({"model": "m", "messages": [{"role": "user", "content": ""}]}, 100)[0].max_tokens is None


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["temperature", "top_p", "n", "max_tokens", "presence_penalty",
                              "frequency_penalty", "min_p", "seed", "logprobs", "stream", "top_k"]),
       value=st.one_of(st.floats(allow_nan=True), st.integers(-10**20, 10**20), st.text(max_size=3),
                       st.booleans(), st.lists(st.integers(), max_size=2)))
def test_any_value_is_accepted_or_a_400_naming_its_field(field, value):
    try:
        parse_completion({"model": "m", "prompt": "x", field: value}, 100)
    except APIError as e:
        assert e.status == 400 and e.param == field and e.message.startswith(field + ":")


def test_histogram_is_cumulative():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v)
    assert h.lines("x") == ['x_bucket{le="0.1"} 1', 'x_bucket{le="1.0"} 3', 'x_bucket{le="+Inf"} 4',
                            "x_sum 4.05", "x_count 4"]
    m = Metrics()
    m.inc("minillm_requests_finished_total", label="stop")
    assert 'minillm_requests_finished_total{finish_reason="stop"} 1' in m.render()
