"""Supervised fine-tuning (SFT): the first stage of InstructGPT (Ouyang et al. 2022, Sec. 3.5).

The model is trained with next-token cross-entropy on demonstrations, exactly as in pre-training,
with two differences that this module implements:

1. Data is conversations, not raw text. Two on-disk formats are read (JSON lines):
     instruction  {"instruction": str, "input": str, "output": str}   (Alpaca, Taori et al. 2023)
     chat         {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
   An instruction record becomes the chat [user: instruction (+ "\\n\\n" + input), assistant: output];
   every conversation is rendered to text with a chat template (minillm.tokenizer.templates: ChatML
   or Llama-2).
2. The loss is taken on the response tokens only: prompt tokens are inputs, never targets (their
   targets are -1, which the cross-entropy ignores), so the model learns to answer, not to imitate
   the user. The assistant's end-of-turn marker is a target too: that is how it learns to stop.

Sequence packing (as in T5 / Raffel et al. 2020, Sec. 3.1.2; Krell et al. 2021 for the attention
mask): short examples are concatenated into rows of seq_len tokens instead of being padded, with
three guarantees -- attention never crosses from one document into another (the model's
block-diagonal `segments` path, exact and differentiable), positions restart at 0 for each document,
and the last token of a document never gets the next document's first token as its target. A packed
batch therefore gives the same loss and gradients as the padded batch of the same examples.
"""
from dataclasses import dataclass

import numpy as np

from ..io.jsonl import iter_jsonl
from ..nn import cross_entropy_backward, cross_entropy_forward
from ..optim import AdamW, clip_grad_norm, warmup_cosine
from ..tokenizer import templates

FORMATS = ("instruction", "chat")


# ------------------------------------------------------------------------------ data formats
def record_to_messages(record, index=0):
    """One JSON-lines record (either format) -> a list of chat messages."""
    if not isinstance(record, dict):
        raise ValueError(f"record {index}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"record {index}: 'messages' must be a non-empty list")
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in msgs):
            raise ValueError(f"record {index}: a chat needs at least one assistant message to train on")
        return [dict(role=m.get("role"), content=m.get("content")) if isinstance(m, dict) else m for m in msgs]
    if "instruction" in record and "output" in record:
        fields = [record["instruction"], record.get("input", ""), record["output"]]
        if not all(isinstance(f, str) for f in fields):
            raise ValueError(f"record {index}: instruction, input and output must be strings")
        user = fields[0] + ("\n\n" + fields[1] if fields[1] else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": fields[2]}]
    raise ValueError(f"record {index}: expected keys {{'instruction', 'input', 'output'}} or {{'messages'}}, "
                     f"got {sorted(record)}")


def load_jsonl(path):
    """A JSON-lines file (plain or .gz) in either format -> list of conversations (lists of messages)."""
    out = [record_to_messages(record, f"{path}:{n}") for n, record in iter_jsonl(path)]
    if not out:
        raise ValueError(f"{path}: no records")
    return out


# ------------------------------------------------------------------------------ rendering + masks
def render_segments(messages, template="chatml"):
    """The rendered conversation as [(text, is_response)] pieces whose concatenation is exactly
    templates.render(messages, template). Each assistant turn's piece is what the template appends
    for it after the generation prompt: its content and its end-of-turn marker."""
    segments, done = [], ""
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        head = templates.render(messages[:i], template, add_generation_prompt=True) if i else ""
        full = templates.render(messages[:i + 1], template)
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError(f"template: {template!r} does not render this conversation prefix-consistently")
        if len(head) > len(done):
            segments.append((head[len(done):], False))
        segments.append((full[len(head):], True))
        done = full
    rest = templates.render(messages, template)[len(done):]
    if rest:
        segments.append((rest, False))
    return segments


def _encode(tokenizer, text, template):
    """Template special tokens become single ids when the tokenizer has them, else plain text."""
    special = set(templates.special_tokens(template)) & set(getattr(tokenizer, "special_tokens", {}) or {})
    return tokenizer.encode(text, allowed_special=special) if special else tokenizer.encode(text)


def tokenize_conversation(tokenizer, messages, template="chatml", max_len=None):
    """-> ids (T,) int64 and mask (T,) float32, mask 1 on the tokens the model must learn to produce.
    Pieces are tokenized separately so that no token straddles a prompt/response boundary."""
    ids, mask = [], []
    for text, is_response in render_segments(messages, template):
        piece = _encode(tokenizer, text, template)
        ids.extend(piece)
        mask.extend([float(is_response)] * len(piece))
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.float32)


def targets_from_mask(ids, mask):  # (T,), (T,) -> (T,) int64
    """Next-token targets of one document: targets[t] = ids[t+1] where mask[t+1] is 1, else -1 (ignored);
    the last position has no next token inside the document, so it is -1 too."""
    targets = np.full(len(ids), -1, dtype=np.int64)
    targets[:-1] = np.where(mask[1:] > 0, ids[1:], -1)
    return targets


# ------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    tokens: np.ndarray     # (B, T) int64
    targets: np.ndarray    # (B, T) int64, -1 = no loss
    positions: np.ndarray  # (T,) int64 or None (0..T-1)
    segments: np.ndarray   # (T,) int64 or None (one document per row)

    @property
    def n_tokens(self):
        return int(self.tokens.size)

    @property
    def n_target_tokens(self):
        return int((self.targets >= 0).sum())


def pad_batch(examples, pad_id=0):
    """Padded batch: one example per row, right-padded (padding is never a target)."""
    T = max(len(ids) for ids, _ in examples)
    tokens = np.full((len(examples), T), pad_id, dtype=np.int64)            # (B, T)
    targets = np.full((len(examples), T), -1, dtype=np.int64)               # (B, T)
    for b, (ids, mask) in enumerate(examples):
        tokens[b, :len(ids)] = ids
        targets[b, :len(ids)] = targets_from_mask(ids, mask)
    return Batch(tokens, targets, None, None)


def pack_examples(examples, seq_len, pad_id=0):
    """Next-fit packing of examples into rows of seq_len tokens, returned as ONE packed row
    (1, R * seq_len): row boundaries are document boundaries too, so R rows side by side are the
    same computation as R separate rows, and one call runs them all. Examples longer than seq_len
    are truncated. -> Batch with positions and segments (document ids) set."""
    if seq_len < 2:
        raise ValueError(f"seq_len: expected >= 2, got {seq_len}")
    rows, row = [], []
    for ids, mask in examples:
        ids, mask = ids[:seq_len], mask[:seq_len]
        if sum(len(i) for i, _ in row) + len(ids) > seq_len:
            rows.append(row)
            row = []
        row.append((ids, mask))
    rows.append(row)
    tokens, targets, positions, segments = [], [], [], []
    doc = 0
    for row in rows:
        used = 0
        for ids, mask in row:
            tokens.append(ids)
            targets.append(targets_from_mask(ids, mask))
            positions.append(np.arange(len(ids), dtype=np.int64))
            segments.append(np.full(len(ids), doc, dtype=np.int64))
            used += len(ids)
            doc += 1
        if used < seq_len:  # padding: its own segment, no targets
            n = seq_len - used
            tokens.append(np.full(n, pad_id, dtype=np.int64))
            targets.append(np.full(n, -1, dtype=np.int64))
            positions.append(np.arange(n, dtype=np.int64))
            segments.append(np.full(n, doc, dtype=np.int64))
            doc += 1
    cat = np.concatenate
    return Batch(cat(tokens)[None, :], cat(targets)[None, :], cat(positions), cat(segments))


def sft_loss_and_grads(model, batch):
    """Mean cross-entropy over the target tokens of a (padded or packed) batch, and its gradients."""
    logits, _, caches = model.forward_train(batch.tokens, positions=batch.positions, segments=batch.segments)
    V = logits.shape[-1]
    loss, c = cross_entropy_forward(logits.reshape(-1, V), batch.targets.reshape(-1))
    grads = model.backward(caches, cross_entropy_backward(1.0, c).reshape(logits.shape))
    return loss, grads


def sft_eval_loss(model, examples, pad_id=0, batch_size=32):
    """Response-token cross-entropy over examples (padded batches, no gradients), token-weighted."""
    total, n = 0.0, 0
    for i in range(0, len(examples), batch_size):
        b = pad_batch(examples[i:i + batch_size], pad_id)
        k = b.n_target_tokens
        if k:
            total += model.loss(b.tokens, b.targets) * k
            n += k
    return total / max(n, 1)


# ------------------------------------------------------------------------------ training
@dataclass
class SFTConfig:
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    steps: int = 200
    batch_size: int = 32           # examples per step
    pack: bool = False             # pack examples into rows of seq_len (else pad each to the longest)
    seq_len: int = 128             # row length when packing
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    pad_id: int = 0
    seed: int = 0


def sft_train(model, examples, cfg=None, eval_fn=None, eval_every=50, log=None):
    """Fine-tune `model` in place on examples [(ids (T,), mask (T,))] from tokenize_conversation.
    Returns the history: one record per step (loss, lr, grad_norm, tokens, target tokens) plus the
    dict eval_fn(model) returns every eval_every steps."""
    cfg = cfg or SFTConfig()
    if not examples:
        raise ValueError("examples: expected at least one (ids, mask) example")
    opt = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    rng = np.random.default_rng(cfg.seed)
    order, pos, history = rng.permutation(len(examples)), 0, []
    for step in range(cfg.steps):
        if pos + cfg.batch_size > len(order):  # new epoch
            order, pos = rng.permutation(len(examples)), 0
        chosen = [examples[i] for i in order[pos:pos + cfg.batch_size]]
        pos += cfg.batch_size
        batch = pack_examples(chosen, cfg.seq_len, cfg.pad_id) if cfg.pack else pad_batch(chosen, cfg.pad_id)
        loss, grads = sft_loss_and_grads(model, batch)
        norm = clip_grad_norm(grads, cfg.max_grad_norm)
        lr = warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)
        opt.step(grads, lr=lr)
        rec = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm, "tokens": batch.n_tokens,
               "target_tokens": batch.n_target_tokens}
        if eval_fn is not None and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            rec.update(eval_fn(model))
        history.append(rec)
        if log:
            log(rec)
    return history
