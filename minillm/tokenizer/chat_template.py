"""A model's own chat template: the Jinja program a model file carries (GGUF `tokenizer.chat_template`,
Hugging Face `chat_template` in tokenizer_config.json or chat_template.jinja) that turns a list of
messages into the exact prompt text the model was fine-tuned on.

It renders the way transformers' apply_chat_template does: jinja2 with trim_blocks and
lstrip_blocks, the loopcontrols extension, a `tojson` filter that keeps non-ASCII text, and the
variables messages, add_generation_prompt, tools, documents, the special-token strings (bos_token,
eos_token, ...), raise_exception(message) and strftime_now(format). A template is untrusted code
from a file, so it runs in jinja2's ImmutableSandboxedEnvironment: no attribute starting with "_",
no mutation of the messages, no Python internals. Any failure -- a syntax error, a template that
calls raise_exception, a sandbox violation -- is a one-line ValueError.

templates.py keeps the built-in ChatML and Llama-2 formats for models that carry no template.
"""
import datetime
import functools
import json

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

class TemplateRaised(Exception):
    """What raise_exception(message) raises inside a template."""


def _raise_exception(message):
    raise TemplateRaised(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


@functools.lru_cache(maxsize=16)
def compile_template(source):
    """A jinja2 Template for the template text `source` (cached), or ValueError if it does not parse."""
    if not isinstance(source, str):
        raise TypeError(f"chat_template: expected str, got {type(source).__name__}")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"chat_template: syntax error on line {e.lineno}: {_one_line(e.message)}") from None


def check_messages(messages):
    """messages: a list of dicts with a str "role" and a "content" (str, or None for tool calls)."""
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages: expected a list of dicts, got {type(messages).__name__}")
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or \
                not isinstance(m.get("content", ""), (str, type(None), list)):
            raise ValueError(f"messages[{k}]: expected {{'role': str, 'content': str}}, got {m!r}")


def render(source, messages, add_generation_prompt=False, special_tokens=None, tools=None, documents=None,
           **kwargs):
    """The prompt text (str) of `messages` under the chat template `source`.

    special_tokens: {"bos_token": "<s>", "eos_token": "</s>", ...} as the template expects them;
    tools, documents and any further keyword become template variables, as in transformers."""
    check_messages(messages)
    template = compile_template(source)
    variables = dict(special_tokens or {})
    variables.update(kwargs)
    try:
        return template.render(messages=[dict(m) for m in messages], tools=tools, documents=documents,
                               add_generation_prompt=bool(add_generation_prompt), **variables)
    except TemplateRaised as e:
        raise ValueError(f"chat_template: the template refused the messages: {_one_line(e)}") from None
    except jinja2.exceptions.SecurityError as e:
        raise ValueError(f"chat_template: blocked by the sandbox: {_one_line(e)}") from None
    except Exception as e:  # a template is a program: any error it hits is reported the same way
        raise ValueError(f"chat_template: rendering failed ({type(e).__name__}): {_one_line(e)}") from None
