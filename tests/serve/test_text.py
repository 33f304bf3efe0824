"""TextStream: streamed text equals decoding everything at once, cut before the first stop string
whatever the token boundaries; chat prompts; end tokens."""
import pytest
from hypothesis import given, settings, strategies as st

from minillm.serve.text import TextStream, chat_prompt_ids, end_token_ids
from minillm.tokenizer import BPETokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tok():
    text = "héllo wörld, naïve café — 日本語のテキスト and plain ascii words " * 20
    return BPETokenizer.train(text, 300, special_tokens=SPECIALS)


def stream_all(tok, ids, stop=(), chunks=None):
    s = TextStream(tok, stop)
    out, i = [], 0
    for n in chunks or [1] * len(ids):
        out.append(s.push(ids[i:i + n]))
        assert "\ufffd" not in out[-1] or "\ufffd" in tok.decode(ids)   # never half a character
        i += n
    out.append(s.push(ids[i:]))
    out.append(s.finish())
    return "".join(out), s.stopped


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_streamed_text_equals_decoding_at_once(tok, data):
    ids = data.draw(st.lists(st.integers(0, 299 - len(SPECIALS)), max_size=40))
    chunks = data.draw(st.lists(st.integers(1, 4), max_size=40))
    text, stopped = stream_all(tok, ids, chunks=chunks)
    assert text == tok.decode(ids) and not stopped


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_stop_string_cuts_before_its_first_occurrence(tok, data):
    text = data.draw(st.text(alphabet="héllo wörld日本 ab", min_size=1, max_size=40))
    ids = tok.encode(text)
    full = tok.decode(ids)
    i = data.draw(st.integers(0, len(full) - 1))
    stop = full[i:i + data.draw(st.integers(1, 4))]
    got, stopped = stream_all(tok, ids, [stop])
    assert stopped and got == full[:full.find(stop)]


def test_stop_string_never_seen_releases_everything(tok):
    ids = tok.encode("plain ascii words")
    got, stopped = stream_all(tok, ids, ["zzz", "words!"])
    assert got == "plain ascii words" and not stopped


def test_held_back_text_is_released_when_the_stop_does_not_complete(tok):
    s = TextStream(tok, ["ab!"])
    assert s.push(tok.encode("xx a")) == "xx "       # "a" could start "ab!"
    assert s.push(tok.encode("b")) == ""             # "ab" still could
    assert s.push(tok.encode("c")) == "abc"
    assert s.finish() == ""


def test_chat_prompt_uses_chatml_special_tokens(tok):
    ids = chat_prompt_ids(tok, [{"role": "user", "content": "hi"}])
    assert ids[0] == tok.special_tokens["<|im_start|>"]
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_prompt_prefers_the_tokenizers_own_template(tok):
    class WithTemplate:
        def apply_chat_template(self, messages, add_generation_prompt):
            assert add_generation_prompt
            return [7, len(messages)]
    assert chat_prompt_ids(WithTemplate(), [{"role": "user", "content": "x"}] * 3) == [7, 3]


def test_end_token_ids(tok):
    assert end_token_ids(tok) == sorted([tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|im_end|>"]])

    class Named:
        eos_token_id = 5
        stop_token_ids = [9, 5]
    assert end_token_ids(Named()) == [5, 9]
