"""Decoding with a contiguous KV cache: the model's forward pass for tokens at positions
pos..pos+T-1 that attend to the keys and values cached before them (Pope et al. 2022, Sec. 2).

Two paths give the same logits. The block-by-block one runs Transformer.forward_with with an
attention hook that writes the new keys and values into the cache and attends over it
(`cached_attention`). For one token of one sequence, `decode_native` runs every block in one C call
(kernels.decode_step, csrc/decode.c) instead, and for 2..NATIVE_MAX_ROWS tokens `rows_native` does
the same through kernels.paged_step (the cache read as one block); they are taken whenever the model
and the cache fit them. The serving engine (engine.py) runs its paged cache through the same two
routes: paged_step, or the block-by-block forward with its own attention hook.
"""
import operator
import weakref

import numpy as np

from .. import kernels
from ..model import NAMES, Transformer
from ..nn import attention_forward, embedding_forward
from ..nn.alibi import alibi_attention_forward


def forward_cached(model, tokens, kv_cache):
    """tokens (B, T) int -> logits (B, T, V) float32. kv_cache: any object with arrays k, v of shape
    (L, B, Hkv, S, D) and an int pos (inference.KVCache). The tokens sit at positions pos..pos+T-1:
    their keys and values are written into the cache, they attend to everything before them, and
    pos advances by T."""
    tokens = np.asarray(tokens)
    tokens = tokens[None, :] if tokens.ndim == 1 else tokens                     # (B, T)
    T, pos = tokens.shape[1], kv_cache.pos
    logits = decode_native(model, tokens, kv_cache) if T == 1 else rows_native(model, tokens, kv_cache)
    if logits is None:
        logits = model.forward_with(tokens, np.arange(pos, pos + T),
                                    lambda l, q, k, v: cached_attention(model, l, q, k, v, kv_cache))
    kv_cache.pos += T
    return logits.reshape(*tokens.shape, -1)


def cached_attention(model, l, q, k, v, kv):  # (B, H, T, D), (B, Hkv, T, D) x 2 -> (B, H, T, D)
    """Layer l's attention hook: writes k, v at slots kv.pos.., then attends over slots 0..pos+T-1
    (a float16 cache: the keys and values rounded as they are written, read back as float32)."""
    T, pos = q.shape[2], kv.pos
    if pos + T > kv.k.shape[3]:
        raise ValueError(f"kv_cache: {pos + T} positions exceed its capacity {kv.k.shape[3]}")
    kv.k[l, :, :, pos:pos + T] = k                                              # (B, Hkv, T, D)
    kv.v[l, :, :, pos:pos + T] = v
    wide = kv.k.dtype == np.float32
    keys = kv.k[l, :, :, :pos + T] if wide else kv.k[l, :, :, :pos + T].astype(np.float32)
    values = kv.v[l, :, :, :pos + T] if wide else kv.v[l, :, :, :pos + T].astype(np.float32)
    if model.alibi_slopes is not None:  # ALiBi: biased attention over the cached keys 0..pos+T-1
        return alibi_attention_forward(q, keys, values, model.alibi_slopes)[0]
    if T == 1 and wide:  # decode: one query against the cache, no copy of the cached keys
        B, H, _, D = q.shape
        out = np.empty((B, H, D), dtype=q.dtype)                                 # (B, H, D)
        lengths = np.full(B, pos + 1, dtype=np.int32)                            # (B,)
        kernels.attention_decode(out, np.ascontiguousarray(q[:, :, 0]), kv.k[l], kv.v[l], lengths,
                                 1.0 / np.sqrt(D))
        return out[:, :, None, :]                                                # (B, H, 1, D)
    a, _ = attention_forward(q, keys, values)
    return a


def decode_weight(model, name):
    """What decode_step multiplies by for the parameter `name`: the float32 array, or the
    QuantizedWeight descriptor of the fused kernel its quantized layer runs for one row of x
    (QuantizedLinear.gemv_kernel); None when that layer has no such kernel."""
    q = model.quantized.get(name)
    if q is None:
        return model.params[name]
    method = getattr(q, "gemv_kernel", None)
    kernel = method() if method is not None else None
    return None if kernel is None else kernel.decode_weight


# model -> (the identities of its parameters, whether they are float32 and C-contiguous, the
# parameters): an array's dtype and layout never change, so the answer holds until one is replaced
_PARAMS_FIT = weakref.WeakKeyDictionary()


def fits_step(model):
    """The C steps can run this model: a Transformer, no QK-norm, learned or rotary positions (not
    ALiBi), float32 parameters. (Whether the kernels are built is each caller's test:
    kernels.decode_step, kernels.paged_step.)"""
    if not isinstance(model, Transformer):      # the C step reads a Transformer's parameters
        return False
    cfg = model.config
    if cfg.qk_norm or cfg.position_scheme == "alibi":
        return False
    ids = tuple(map(id, model.params.values()))   # checked before every decode step: no array touched
    hit = _PARAMS_FIT.get(model)
    if hit is None or hit[0] != ids:
        params = list(model.params.values())
        hit = (ids, all(a.dtype == np.float32 and a.flags.c_contiguous for a in params), params)
        _PARAMS_FIT[model] = hit
    return hit[1]


# Up to this many tokens of one sequence in one call (decode, a speculative verification, a short
# prompt or prefill chunk) take the C step. It equals GGMLLinear's INT8_MAX_M (quant/linear.py): a
# longer prompt keeps the block-by-block forward, where quantized layers multiply with float
# activations (dequantized tiles) and float32 ones through BLAS, so a token's arithmetic is the
# same on both routes. (Rounding a long prompt's activations to int8 moved SmolLM2's greedy answer
# to "What is the capital of France?" away from "Paris".)
NATIVE_MAX_ROWS = 32


def rows_fit(longest):
    """A call whose longest run of one sequence's tokens is `longest` takes the C step."""
    return longest <= NATIVE_MAX_ROWS


STEP_KV_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))   # the cache types the C steps read


def _fits_native(model, tokens, kv):
    """The C steps run: the model fits (fits_step), tokens of one sequence, a float32 or float16
    cache."""
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        return False
    k, v = getattr(kv, "k", None), getattr(kv, "v", None)
    if not all(isinstance(a, np.ndarray) and a.dtype in STEP_KV_DTYPES and a.dtype == k.dtype and a.flags.c_contiguous
               and a.ndim == 5 and a.shape[1] == 1 for a in (k, v)):
        return False
    return fits_step(model)


def step_tables(model):
    """The per-layer tables (role -> array or weight descriptor) and the head (ln_f.w, ln_f.b,
    W_head) the C steps take, or None when a quantized layer has no kernel for them; the head is
    None when only its weight lacks one (the caller then runs the Python head)."""
    p, names = model.params, NAMES[model.config.arch]
    layers = [{role: decode_weight(model, name) if name in model.quantized else p.get(name)
               for role, name in n.items()} for n in model.layer_names]
    if any(model.layer_names[l][role] in model.quantized and w is None
           for l, layer in enumerate(layers) for role, w in layer.items()):
        return None
    w_head = decode_weight(model, model.head_weight)
    head = None if w_head is None else (p[names["ln_f.w"]], p.get(names.get("ln_f.b", "")), w_head)
    return layers, head


# model -> (key, kernels.StepWeights or None, the objects the key names): the C step's checked tables,
# built once per set of weights. The key is the identities of the model's parameters and quantized
# layers (and whether each takes int8 activations): replacing any of them builds new tables; the
# entry holds them, so no id in a live key is reused.
_STEP_WEIGHTS = weakref.WeakKeyDictionary()
_ACT_INT8 = operator.attrgetter("act_int8")


def step_weights(model, n_kv_head, head_dim):
    """kernels.StepWeights of the model for a cache of n_kv_head heads of head_dim (its head included
    when the C step can run it), or None when a quantized layer has no kernel for the step."""
    quantized = model.quantized.values()
    try:                                          # C-level maps: this runs before every decode step
        acts = tuple(map(_ACT_INT8, quantized))
    except AttributeError:                        # a layer type that is not a QuantizedLinear
        acts = tuple(getattr(q, "act_int8", None) for q in quantized)
    key = (n_kv_head, head_dim, tuple(map(id, model.params.values())), tuple(map(id, quantized)), acts)
    hit = _STEP_WEIGHTS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    tables, cfg = step_tables(model), model.config
    weights = None
    if tables is not None:
        layers, head = tables
        weights = kernels.StepWeights(layers, head, cfg.d_model, cfg.n_head * head_dim, n_kv_head * head_dim,
                                      cfg.norm == "layernorm")
    _STEP_WEIGHTS[model] = (key, weights, (list(model.params.values()), list(quantized)))
    return weights


def embed_rows(model, tokens, positions):
    """x (T, C) float32: the token embeddings (+ learned positions) of tokens (T,) at positions (T,),
    and the RoPE tables (T, D/2) of those positions (None, None without RoPE)."""
    cfg, p, names = model.config, model.params, NAMES[model.config.arch]
    x, _ = embedding_forward(tokens[None], p[names["wte"]])                    # (1, T, C)
    x = x[0]
    if cfg.position_scheme == "learned":
        if int(positions.max()) >= cfg.max_seq_len:
            raise ValueError(f"tokens: position {int(positions.max())} exceeds max_seq_len {cfg.max_seq_len}")
        x = x + p[names["wpe"]][positions]
    x = np.ascontiguousarray(x, dtype=np.float32)
    if cfg.position_scheme != "rope":
        return x, None, None
    cos, sin = model.rope_tables(positions)
    return x, np.ascontiguousarray(cos, dtype=np.float32), np.ascontiguousarray(sin, dtype=np.float32)


def decode_native(model, tokens, kv):
    """logits (1, V) of one new token (B = T = 1) through kernels.decode_step, which runs every
    block in one C call (csrc/decode.c) with the same kernels as the block-by-block path; None when
    the model or the cache does not fit it (_fits_native, or a quantized layer without a fused
    kernel), and the caller then takes the block-by-block path. Does not advance kv.pos."""
    if kernels.decode_step is None or not _fits_native(model, tokens, kv):
        return None
    tokens = model.check_tokens(tokens)
    cfg, pos = model.config, kv.pos
    if pos >= kv.k.shape[3]:
        raise ValueError(f"kv_cache: {pos + 1} positions exceed its capacity {kv.k.shape[3]}")
    weights = step_weights(model, kv.k.shape[2], kv.k.shape[4])
    if weights is None:
        return None
    x, cos, sin = embed_rows(model, tokens[0], np.array([pos]))
    x = x.reshape(cfg.d_model)                                                    # (C,)
    if cos is not None:
        cos, sin = cos[0], sin[0]                                                 # (D/2,) each
    logits = kernels.decode_step(x, weights, kv.k, kv.v, pos, cfg.n_head, cfg.norm_eps,
                                 cfg.norm == "layernorm", cos, sin)
    if logits is None:                           # a head decode_step cannot run: the Python one
        return model.head(x.reshape(1, 1, cfg.d_model))[0]
    return logits.reshape(1, -1)


class NativeDecoder:
    """The decode steps of the sequence in a KV cache (B = 1) through one kernels.DecodeLoop, checked
    and converted once; both calls advance kv.pos by the steps they run. decoder(token) runs the next
    step and returns its logits (V,) float32: decode_native's to the bit (the same C call on the same
    values) without its per-step checks. decoder.run(token, n, choose=None) runs up to n steps in
    one C call (DecodeLoop.run: the same steps, no return to Python between them unless choose is
    given; choose(logits, greedy) -> the next id or None) and returns the tokens chosen."""

    def __init__(self, loop, kv):
        self.loop, self.kv = loop, kv

    def __call__(self, token):
        logits = self.loop.step(token, self.kv.pos)
        self.kv.pos += 1
        return logits

    def run(self, token, n, choose=None):
        try:
            return self.loop.run(token, self.kv.pos, n, choose)[0]
        finally:                  # also when choose raised or the logits held NaN: those steps are cached
            self.kv.pos += self.loop.steps


def native_decoder(model, kv):
    """A NativeDecoder for the sequence in kv, or None when decode_native would not take the C step
    for every token (the model, cache or a quantized layer does not fit it, or the head needs the
    Python one): the caller then uses forward_cached."""
    if kernels.DecodeLoop is None or kernels.decode_step is None \
            or not _fits_native(model, np.zeros((1, 1), np.int64), kv):
        return None
    cfg, p, names = model.config, model.params, NAMES[model.config.arch]
    weights = step_weights(model, kv.k.shape[2], kv.k.shape[4])
    embed = p[names["wte"]]
    pos_embed = p[names["wpe"]] if cfg.position_scheme == "learned" else None
    tables = (embed,) if pos_embed is None else (embed, pos_embed)
    if weights is None or weights.head[3] == 0 or not all(
            isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 2 and a.flags.c_contiguous
            for a in tables):
        return None
    Smax = kv.k.shape[3]
    cos = sin = None
    if cfg.position_scheme == "rope":        # every slot's rows, as embed_rows computes one position's
        cos, sin = (np.ascontiguousarray(t, dtype=np.float32) for t in model.rope_tables(np.arange(Smax)))
    loop = kernels.DecodeLoop(weights, kv.k, kv.v, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm",
                              embed, pos_embed, cos, sin)
    return NativeDecoder(loop, kv)


def rows_native(model, tokens, kv):
    """logits (T, V) of T > 1 tokens of one sequence (B = 1: a prompt, a speculative verification)
    through kernels.paged_step, the contiguous cache read as one block of Smax positions: every
    block in one C call, the tokens attending to the cache and causally to each other. None when
    the model or the cache does not fit it or the run is long (rows_fit); the caller then takes the
    block-by-block path. Does not advance kv.pos."""
    if kernels.paged_step is None or not _fits_native(model, tokens, kv) or not rows_fit(tokens.shape[1]):
        return None
    T, pos, Smax = tokens.shape[1], kv.pos, kv.k.shape[3]
    if pos + T > Smax:
        raise ValueError(f"kv_cache: {pos + T} positions exceed its capacity {Smax}")
    return step_rows(model, tokens[0], np.arange(pos, pos + T), kv.k, kv.v, np.zeros((1, 1), dtype=np.int32),
                     np.zeros(T, dtype=np.int32))


def step_rows(model, tokens, positions, k, v, tables, row_table, head_rows=None):
    """The logits (len(head_rows), V) of the rows head_rows (default all) after tokens (T,) at
    positions (T,), row t of sequence row_table[t] whose block table is tables[row_table[t]], ran
    through kernels.paged_step over the pages k, v; None when a quantized layer has no kernel for it.
    The head runs in Python when only its weight lacks one."""
    weights, cfg = step_weights(model, k.shape[2], k.shape[4]), model.config
    if weights is None:
        return None
    x, cos, sin = embed_rows(model, model.check_tokens(tokens[None])[0], positions)
    logits = kernels.paged_step(x, weights, k, v, tables, row_table, positions.astype(np.int32), cfg.n_head,
                                cfg.norm_eps, cfg.norm == "layernorm", cos, sin, None, head_rows)
    if logits is None:                           # a head the C step cannot run: the Python one
        return model.head((x if head_rows is None else x[head_rows])[None])[0]
    return logits
