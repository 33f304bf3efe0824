"""Chat templates: how a multi-turn conversation becomes one string of text and special tokens.

- ChatML (OpenAI; used by Qwen and many fine-tunes): every message is
  `<|im_start|>{role}\\n{content}<|im_end|>\\n`; a generation prompt ends with `<|im_start|>assistant\\n`.
- Llama-2 chat (Touvron et al. 2023, Meta's reference `chat_completion`): each user/assistant
  exchange is `<s>[INST] {user} [/INST] {assistant} </s>`, the system prompt is folded into the first
  user turn as `<<SYS>>\\n{system}\\n<</SYS>>\\n\\n`, and a pending user turn ends at `[/INST]`.
  Only `<s>` and `</s>` are special tokens; `[INST]` and `<<SYS>>` are ordinary text.

Messages are dicts {"role": "system"|"user"|"assistant", "content": str}. Contents are written
verbatim (Meta's code strips them; we do not, so that `parse(render(m)) == m` exactly). `encode`
renders and tokenizes with only the template's special tokens allowed.
"""
import re

ROLES = ("system", "user", "assistant")

CHATML_SPECIAL = ("<|im_start|>", "<|im_end|>")
LLAMA2_SPECIAL = ("<s>", "</s>")
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


def _check(messages):
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages: expected a list of dicts, got {type(messages).__name__}")
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{k}]: expected {{'role': one of {ROLES}, 'content': str}}, got {m!r}")


def render_chatml(messages, add_generation_prompt=False):
    _check(messages)
    for k, m in enumerate(messages):
        if "<|im_start|>" in m["content"] or "<|im_end|>" in m["content"]:
            raise ValueError(f"messages[{k}]: content contains a ChatML special token")
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


_CHATML_TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>\n", re.S)


def parse_chatml(text):
    """Inverse of render_chatml (a trailing generation prompt is ignored)."""
    messages, pos = [], 0
    for m in _CHATML_TURN.finditer(text):
        if m.start() != pos:
            raise ValueError(f"text: unexpected characters at {pos}: {text[pos:pos + 20]!r}")
        messages.append({"role": m.group(1), "content": m.group(2)})
        pos = m.end()
    if text[pos:] not in ("", "<|im_start|>assistant\n"):
        raise ValueError(f"text: not ChatML after position {pos}: {text[pos:pos + 20]!r}")
    return messages


def render_llama2(messages, add_generation_prompt=True):
    """Llama-2 chat. Roles: optional system first, then user/assistant alternating, starting with user.
    A final user message is left open for the model's answer (add_generation_prompt has no other form)."""
    _check(messages)
    messages = list(messages)
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    for k, m in enumerate(messages):
        want = "user" if k % 2 == 0 else "assistant"
        if m["role"] != want:
            raise ValueError(f"messages: Llama-2 turns alternate user/assistant; turn {k} is {m['role']!r}")
        if any(t in m["content"] for t in (B_INST, E_INST, "<s>", "</s>")):
            raise ValueError(f"messages: turn {k} contains a Llama-2 marker")
    if not messages:
        raise ValueError("messages: Llama-2 chat needs at least one user message")
    out = []
    for k in range(0, len(messages), 2):
        user = messages[k]["content"]
        if k == 0 and system is not None:
            user = B_SYS + system + E_SYS + user
        turn = f"<s>{B_INST} {user} {E_INST}"
        if k + 1 < len(messages):
            turn += f" {messages[k + 1]['content']} </s>"
        out.append(turn)
    return "".join(out)


_LLAMA_TURN = re.compile(r"<s>\[INST\] (.*?) \[/INST\](?: (.*?) </s>)?", re.S)


def parse_llama2(text):
    """Inverse of render_llama2."""
    messages, pos = [], 0
    for m in _LLAMA_TURN.finditer(text):
        if m.start() != pos:
            raise ValueError(f"text: unexpected characters at {pos}: {text[pos:pos + 20]!r}")
        user = m.group(1)
        if not messages and user.startswith(B_SYS) and E_SYS in user:
            system, user = user[len(B_SYS):].split(E_SYS, 1)
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        if m.group(2) is not None:
            messages.append({"role": "assistant", "content": m.group(2)})
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"text: not Llama-2 chat after position {pos}: {text[pos:pos + 20]!r}")
    return messages


TEMPLATES = {
    "chatml": (render_chatml, parse_chatml, CHATML_SPECIAL),
    "llama2": (render_llama2, parse_llama2, LLAMA2_SPECIAL),
}


def _template(name):
    if name not in TEMPLATES:
        raise ValueError(f"template: expected one of {sorted(TEMPLATES)}, got {name!r}")
    return TEMPLATES[name]


def render(messages, template="chatml", add_generation_prompt=False):
    fn = _template(template)[0]
    return fn(messages, add_generation_prompt) if template == "chatml" else fn(messages)


def parse(text, template="chatml"):
    return _template(template)[1](text)


def special_tokens(template="chatml"):
    """The special-token strings a tokenizer needs for this template."""
    return list(_template(template)[2])


def encode(tokenizer, messages, template="chatml", add_generation_prompt=False):
    """Token ids of the rendered conversation; only the template's own special tokens are allowed."""
    missing = [t for t in special_tokens(template) if t not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"tokenizer: lacks the {template} special tokens {missing}; train it with "
                         f"special_tokens=templates.special_tokens({template!r})")
    return tokenizer.encode(render(messages, template, add_generation_prompt),
                            allowed_special=set(special_tokens(template)))
