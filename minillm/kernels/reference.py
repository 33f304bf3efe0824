"""NumPy reference kernels: the specification every native kernel is tested against.

Each function takes its outputs first and its inputs after, in the argument order of the C kernel of
the same name (csrc/), and writes into the outputs. Sizes come from the array shapes. These stay plain
on purpose (like llm.c's *_naive and ggml's *_ref): they define what "correct" means, and they also
run the float64 gradient checks, so they accept any float dtype.

Attention convention used throughout: q (B, H, T, D), k and v (B, Hkv, S, D) with S >= T and H a
multiple of Hkv (grouped-query attention: query head h reads kv head h // (H // Hkv)). Query row i
sits at absolute position S - T + i and attends to keys 0 .. S - T + i (causal with an offset, which
covers training S == T, prefill onto a cache and single-token decode).
"""
import numpy as np

from .arith import ceil_div

GELU_C = np.sqrt(2.0 / np.pi)


def matmul(out, x, w):  # (M, N) <- (M, K), (N, K): out = x @ w.T
    np.matmul(x, w.T, out=out)


def matmul_group(outs, x, ws):  # [(M, N_i)] <- (M, K), [(N_i, K)]: outs[i] = x @ ws[i].T
    if len(outs) != len(ws):
        raise ValueError(f"matmul_group: {len(outs)} outputs for {len(ws)} weights")
    for out, w in zip(outs, ws):
        matmul(out, x, w)


# ----------------------------------------------------------------------------------- attention
def _expand_kv(k, H):  # (B, Hkv, S, D) -> (B, H, S, D), each kv head repeated H // Hkv times
    return np.repeat(k, H // k.shape[1], axis=1)


def _causal_mask(T, S):  # (T, S) True where query i may attend key j
    return np.arange(S)[None, :] <= (S - T + np.arange(T))[:, None]


def _scores(q, kk, scale, bias):  # (B, H, T, D), (B, H, S, D) -> (B, H, T, S), causal
    T, S = q.shape[2], kk.shape[2]
    s = np.matmul(q, kk.swapaxes(-1, -2)) * scale                        # (B, H, T, S)
    if bias is not None:
        s = s + bias                                                     # (B, H, T, S)
    return np.where(_causal_mask(T, S), s, -np.inf)


def attention_forward(out, lse, q, k, v, scale, bias=None):
    """out = softmax(q k^T * scale + bias + causal mask) v; lse = log-sum-exp of each row's scores.
    bias: None, or an additive score bias broadcastable to (B, H, T, S) (ALiBi, nn/alibi.py; the C
    kernel has none, so kernels/__init__.py sends biased calls here).
    (B, H, T, D), (B, H, T) <- (B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D)"""
    H = q.shape[1]
    kk, vv = _expand_kv(k, H), _expand_kv(v, H)                          # (B, H, S, D)
    s = _scores(q, kk, scale, bias)                                      # (B, H, T, S)
    m = s.max(axis=-1, keepdims=True)                                    # (B, H, T, 1)
    p = np.exp(s - m)                                                    # (B, H, T, S)
    l = p.sum(axis=-1, keepdims=True)                                    # (B, H, T, 1)
    out[...] = np.matmul(p / l, vv)                                      # (B, H, T, D)
    lse[...] = (m + np.log(l))[..., 0]                                   # (B, H, T)


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale, bias=None):
    """Gradients of attention_forward (the bias is a constant: no gradient). P is rebuilt from lse
    (no (T, S) tensor is saved), and dS = P * (dP - rowsum(dout * out)), the softmax backward
    written with D_i = dout_i . out_i (Dao et al. 2022, FlashAttention, Alg. 4)."""
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    kk, vv = _expand_kv(k, H), _expand_kv(v, H)                          # (B, H, S, D)
    p = np.exp(_scores(q, kk, scale, bias) - lse[..., None])             # (B, H, T, S); 0 if masked
    dvv = np.matmul(p.swapaxes(-1, -2), dout)                            # (B, H, S, D)
    dp = np.matmul(dout, vv.swapaxes(-1, -2))                            # (B, H, T, S)
    Di = np.sum(dout * out, axis=-1, keepdims=True)                      # (B, H, T, 1)
    ds = p * (dp - Di) * scale                                           # (B, H, T, S)
    dq[...] = np.matmul(ds, kk)                                          # (B, H, T, D)
    dkk = np.matmul(ds.swapaxes(-1, -2), q)                              # (B, H, S, D)
    n_rep = H // Hkv                                                     # query heads per kv head
    dk[...] = dkk.reshape(B, Hkv, n_rep, S, D).sum(axis=2)               # (B, Hkv, S, D)
    dv[...] = dvv.reshape(B, Hkv, n_rep, S, D).sum(axis=2)


def attention_decode(out, q, k_cache, v_cache, lengths, scale):
    """One new query per sequence against its cache: row b attends slots 0 .. lengths[b]-1.
    (B, H, D) <- (B, H, D), (B, Hkv, Smax, D), (B, Hkv, Smax, D), (B,) int"""
    for b in range(q.shape[0]):
        n = int(lengths[b])
        out[b] = _attend_one(q[b], k_cache[b, :, :n], v_cache[b, :, :n], scale)


def _attend_one(q, k, v, scale):  # (H, D), (Hkv, n, D), (Hkv, n, D) -> (H, D): one query per head
    n_rep = q.shape[0] // k.shape[0]                                     # query heads per kv head
    kk, vv = np.repeat(k, n_rep, axis=0), np.repeat(v, n_rep, axis=0)        # (H, n, D)
    s = np.einsum("hd,hnd->hn", q, kk) * scale                           # (H, n)
    p = np.exp(s - s.max(axis=-1, keepdims=True))                        # (H, n)
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hn,hnd->hd", p, vv)                                # (H, D)


def paged_attention_decode(out, q, k_pages, v_pages, block_tables, lengths, scale):
    """attention_decode with the cache in pages (Kwon et al. 2023, PagedAttention, Sec. 4.1):
    sequence b's positions 0 .. lengths[b]-1 live in pages block_tables[b, 0], [b, 1], ..., bs
    positions each. Gathers them into a contiguous array and attends.
    (B, H, D) <- (B, H, D), (NB, Hkv, bs, D), (NB, Hkv, bs, D), (B, MB) int, (B,) int"""
    D = q.shape[2]
    Hkv, bs = k_pages.shape[1], k_pages.shape[2]
    for b in range(q.shape[0]):
        n = int(lengths[b])
        pages = block_tables[b, :ceil_div(n, bs)]                     # the pages holding 0..n-1
        k = k_pages[pages].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]  # (Hkv, n, D)
        v = v_pages[pages].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]
        out[b] = _attend_one(q[b].astype(np.float64), k, v, scale)


# ----------------------------------------------------------------------------------- norms
def layernorm_forward(y, mean, rstd, x, w, b, eps):
    """y = (x - mean) * rstd * w + b over the last axis (Ba et al. 2016). (N, C), (N,), (N,) <- (N, C)"""
    mean[...] = x.mean(axis=-1)                                          # (N,)
    xc = x - mean[:, None]                                               # (N, C)
    rstd[...] = 1.0 / np.sqrt((xc * xc).mean(axis=-1) + eps)             # (N,)
    y[...] = xc * rstd[:, None] * w + b                                  # (N, C)


def layernorm_backward(dx, dw, db, dy, x, w, mean, rstd):
    """(N, C), (C,), (C,) <- (N, C), (N, C), (C,), (N,), (N,)"""
    n = (x - mean[:, None]) * rstd[:, None]                              # (N, C) normalised x
    db[...] = dy.sum(axis=0)                                             # (C,)
    dw[...] = (dy * n).sum(axis=0)                                       # (C,)
    dn = dy * w                                                          # (N, C)
    dx[...] = rstd[:, None] * (dn - dn.mean(axis=-1, keepdims=True)
                               - n * (dn * n).mean(axis=-1, keepdims=True))


def rmsnorm_forward(y, rstd, x, w, eps):
    """y = x / rms(x) * w over the last axis (Zhang & Sennrich 2019). (N, C), (N,) <- (N, C), (C,)"""
    rstd[...] = 1.0 / np.sqrt((x * x).mean(axis=-1) + eps)               # (N,)
    y[...] = x * rstd[:, None] * w                                       # (N, C)


def rmsnorm_backward(dx, dw, dy, x, w, rstd):
    """(N, C), (C,) <- (N, C), (N, C), (C,), (N,)"""
    n = x * rstd[:, None]                                                # (N, C)
    dw[...] = (dy * n).sum(axis=0)                                       # (C,)
    dn = dy * w                                                          # (N, C)
    dx[...] = rstd[:, None] * (dn - n * (dn * n).mean(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------- activations
def gelu_forward(y, x):
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as GPT-2 uses:
    y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Any shape."""
    y[...] = 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))


def gelu_backward(dx, dy, x):
    u = GELU_C * (x + 0.044715 * x ** 3)
    t = np.tanh(u)
    du = GELU_C * (1.0 + 3 * 0.044715 * x * x)
    dx[...] = dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def swiglu_forward(y, a, b):
    """SwiGLU gate (Shazeer 2020): y = silu(a) * b = a * sigmoid(a) * b. Any shape."""
    y[...] = a / (1.0 + np.exp(-a)) * b


def swiglu_backward(da, db, dy, a, b):
    sig = 1.0 / (1.0 + np.exp(-a))
    db[...] = dy * a * sig
    da[...] = dy * b * sig * (1.0 + a * (1.0 - sig))                     # d silu = s (1 + a (1 - s))


# ----------------------------------------------------------------------------------- rope
def rope(out, x, cos, sin):
    """Rotary position embedding (Su et al. 2021) in the "rotate half" layout of HF Llama: channel i
    pairs with i + D/2. out = x * [cos, cos] + rotate_half(x) * [sin, sin].
    (B, H, T, D) <- (B, H, T, D), (T, D/2), (T, D/2). The backward pass is rope(dx, dout, cos, -sin)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]                                      # (B, H, T, D/2)
    out1, out2 = x1 * cos - x2 * sin, x2 * cos + x1 * sin                 # both before out is written:
    out[..., :h], out[..., h:] = out1, out2                              # out may alias x


# ----------------------------------------------------------------------------------- loss
def cross_entropy(loss, dlogits, logits, targets, z_loss, grad_scale):
    """Fused log-softmax cross-entropy with optional z-loss (PaLM, Chowdhery et al. 2022, Sec. 5):
    loss_i = lse_i - logits[i, t_i] + z_loss * lse_i^2, and dlogits = grad_scale * dloss_i/dlogits_i
    = grad_scale * (softmax_i * (1 + 2 z_loss lse_i) - onehot(t_i)). Rows with target < 0 are
    ignored (loss 0, gradient 0). (N,), (N, V) <- (N, V), (N,) int. dlogits may be logits (in place)."""
    m = logits.max(axis=-1, keepdims=True)                               # (N, 1)
    e = np.exp(logits - m)                                               # (N, V)
    se = e.sum(axis=-1, keepdims=True)                                   # (N, 1)
    lse = (m + np.log(se))[:, 0]                                         # (N,)
    valid = targets >= 0                                                 # (N,)
    t = np.where(valid, targets, 0)
    picked = logits[np.arange(len(t)), t]                                # (N,)
    loss[...] = np.where(valid, lse - picked + z_loss * lse * lse, 0.0)
    g = e / se * (1.0 + 2.0 * z_loss * lse)[:, None]                     # (N, V)
    g[np.arange(len(t)), t] -= 1.0
    dlogits[...] = np.where(valid[:, None], g * grad_scale, 0.0)


# ----------------------------------------------------------------------------------- optimizer
def adamw_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    """One AdamW update in place (Loshchilov & Hutter 2019, Alg. 2) with bias correction:
    m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p).
    Any shape; p, g, m, v share it. step counts from 1. grad_scale: the update reads g * grad_scale
    (gradient clipping's coefficient; g itself is left unchanged)."""
    if grad_scale != 1.0:
        g = g * np.asarray(grad_scale, dtype=g.dtype)
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    p -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)


def sum_squares(x):
    """sum of x**2 over every element, accumulated in float64 (a gradient's squared L2 norm)."""
    x64 = np.asarray(x).ravel().astype(np.float64, copy=False)
    return float(np.dot(x64, x64))


# ----------------------------------------------------------------------------------- decode step
def _dense(w):  # a decode weight -> (N, K): a float array, or a QuantizedWeight (kernels.native)
    return w if isinstance(w, np.ndarray) else w.dequantize()


def _row_linear(x, w, b):  # (K,), (N, K) weight, (N,) or None -> (N,)
    W = _dense(w)
    y = np.empty((1, W.shape[0]), dtype=x.dtype)                         # (1, N)
    matmul(y, x[None], W)
    return y[0] if b is None else y[0] + b


def _row_norm(x, w, b, eps, layernorm):  # (C,) -> (C,): LayerNorm (with bias b) or RMSNorm
    y, stat = np.empty((1, x.shape[0]), dtype=x.dtype), np.empty((2, 1), dtype=x.dtype)
    if layernorm:
        layernorm_forward(y, stat[0], stat[1], x[None], w, b, eps)
    else:
        rmsnorm_forward(y, stat[1], x[None], w, eps)
    return y[0]


def _qkv_row(x, layer, n_head, Hkv, D, rope_cos, rope_sin):
    """One row's projections: (C,) normed input -> q (1, H, 1, D) and k (1, Hkv, 1, D), rotated when
    rope tables (D/2,) are given, and v (Hkv, D)."""
    Cq, Ckv = n_head * D, Hkv * D
    if "qkv.w" in layer:                                                 # fused projection (gpt2)
        q, k, v = np.split(_row_linear(x, layer["qkv.w"], layer.get("qkv.b")), [Cq, Cq + Ckv])
    else:
        q, k, v = (_row_linear(x, layer[r + ".w"], layer.get(r + ".b")) for r in "qkv")
    q, k = q.reshape(1, n_head, 1, D), k.reshape(1, Hkv, 1, D)          # (1, H, 1, D), (1, Hkv, 1, D)
    if rope_cos is not None:
        q_rot, k_rot = np.empty_like(q), np.empty_like(k)
        rope(q_rot, q, rope_cos[None], rope_sin[None])
        rope(k_rot, k, rope_cos[None], rope_sin[None])
        q, k = q_rot, k_rot
    return q, k, v.reshape(Hkv, D)


def _attend_row(q, k, v, n):  # q (1, H, 1, D), k v (1, Hkv, >= n, D) -> (H * D,) over positions 0..n-1
    att = np.empty((1, q.shape[1], q.shape[3]), dtype=q.dtype)           # (1, H, D)
    scale = np.float32(1.0) / np.sqrt(np.float32(q.shape[3]))
    attention_decode(att, q[:, :, 0], k, v, np.array([n]), scale)
    return att.reshape(-1)


def _mlp_row(x, layer, eps, layernorm):  # x (C,) += the block's MLP of norm2(x)
    h = _row_norm(x, layer["ln2.w"], layer.get("ln2.b"), eps, layernorm)
    up = _row_linear(h, layer["up.w"], layer.get("up.b"))                                # (F,)
    act = np.empty_like(up)
    if layer.get("gate.w") is not None:                                                   # SwiGLU
        swiglu_forward(act, _row_linear(h, layer["gate.w"], layer.get("gate.b")), up)
    else:                                                                                 # GELU
        gelu_forward(act, up)
    x += _row_linear(act, layer["down.w"], layer.get("down.b"))                          # residual


def paged_step(x, layers, k_pages, v_pages, tables, row_table, row_pos, n_head, eps, layernorm, rope_cos=None,
               rope_sin=None, head=None, head_rows=None):
    """M tokens of several sequences through every block over a paged cache (arguments as
    kernels.native.paged_step): per layer, every row's key and value are stored at its position's
    slot first, then each row attends over its sequence's positions 0..row_pos[m], gathered from
    the pages through its block table (float16 pages: each key and value rounded to float16 when
    stored, read back as float32). Returns logits (len(head_rows), V), or None without a head."""
    M, bs = x.shape[0], k_pages.shape[3]
    Hkv, D = k_pages.shape[2], k_pages.shape[4]
    for l, layer in enumerate(layers):
        qs = []
        for m in range(M):                         # every row's K/V first: a chunk's rows see each other
            h = _row_norm(x[m], layer["ln1.w"], layer.get("ln1.b"), eps, layernorm)
            cs = (None, None) if rope_cos is None else (rope_cos[m], rope_sin[m])
            q, k, v = _qkv_row(h, layer, n_head, Hkv, D, *cs)
            pos = int(row_pos[m])
            blk = tables[row_table[m], pos // bs]
            k_pages[l, blk, :, pos % bs], v_pages[l, blk, :, pos % bs] = k[0, :, 0], v
            qs.append(q)
        for m in range(M):
            n = int(row_pos[m]) + 1
            table = tables[row_table[m], :ceil_div(n, bs)]
            k = k_pages[l, table].transpose(1, 0, 2, 3).reshape(1, Hkv, -1, D)     # (1, Hkv, blocks*bs, D)
            v = v_pages[l, table].transpose(1, 0, 2, 3).reshape(1, Hkv, -1, D)
            x[m] += _row_linear(_attend_row(qs[m], np.ascontiguousarray(k, np.float32), np.ascontiguousarray(v, np.float32), n),
                                layer["o.w"], layer.get("o.b"))
            _mlp_row(x[m], layer, eps, layernorm)
    if head is None:
        return None
    lnf_w, lnf_b, w_head = head
    rows = range(M) if head_rows is None else head_rows
    return np.stack([_row_linear(_row_norm(x[m], lnf_w, lnf_b, eps, layernorm), w_head, None) for m in rows])


def decode_step(x, layers, k_cache, v_cache, pos, n_head, eps, layernorm, rope_cos=None, rope_sin=None,
                head=None):
    """One token through every block (arguments as kernels.native.decode_step: x (C,) is replaced by
    the last block's output; the caches (L, 1, Hkv, Smax, D) get the token's keys and values at slot
    pos; head = (ln_f.w, ln_f.b or None, W_head) or None): paged_step with one row and the cache as
    one block of Smax positions. A weight is a float array or a QuantizedWeight, whose dequantize()
    gives W. Returns logits (V,), or None without a head."""
    rope = [None if r is None else r[None] for r in (rope_cos, rope_sin)]
    logits = paged_step(x[None], layers, k_cache, v_cache, np.zeros((1, 1), np.int64), np.zeros(1, np.int64),
                        np.array([pos]), n_head, eps, layernorm, *rope, head)
    return None if logits is None else logits[0]
