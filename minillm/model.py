"""The Transformer decoder (Vaswani et al. 2017; Radford et al. 2019 for GPT-2; Touvron et al. 2023
for Llama) with hand-written backward passes, in the style of llm.c's train_gpt2.c: `_forward`
runs the blocks and keeps one cache per layer, `_backward` walks them in exactly the reverse order.

One ModelConfig covers both flavours:
  gpt2  -- pre-LayerNorm blocks, GELU-tanh MLP, learned positions, biases, tied embeddings, fused QKV;
  llama -- RMSNorm, SwiGLU MLP, rotary positions (RoPE), no biases, grouped-query attention.
Options for both: qk_norm (normalise q and k per head before the dot product, Dehghani et al. 2023)
and z_loss (PaLM's log-normaliser penalty). Parameter names are the Hugging Face names of the same
architecture (see NAMES), so checkpoint import/export in minillm.io is a table, not code.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .kernels.arith import ceil_div
from .nn import (attention_backward, attention_forward, cross_entropy_backward, cross_entropy_forward,
                 embedding_backward, embedding_forward, gelu_backward, gelu_forward, layernorm_backward,
                 layernorm_forward, linear_backward, linear_backward_group, linear_forward, linear_forward_group,
                 rmsnorm_backward, rmsnorm_forward, rope_backward, rope_forward, rope_parameters,
                 rope_tables, swiglu_backward, swiglu_forward)
from .nn.attention import segment_bounds, segmented_attention_backward, segmented_attention_forward
from .nn.alibi import alibi_attention_backward, alibi_attention_forward, alibi_slopes

# role -> Hugging Face parameter name; "{i}" is the layer index. A role is present in a model only
# when the config calls for it (biases, qk_norm, untied lm_head, learned positions).
NAMES = {
    "gpt2": {
        "wte": "transformer.wte.weight", "wpe": "transformer.wpe.weight",
        "ln_f.w": "transformer.ln_f.weight", "ln_f.b": "transformer.ln_f.bias",
        "lm_head": "lm_head.weight",
        "ln1.w": "transformer.h.{i}.ln_1.weight", "ln1.b": "transformer.h.{i}.ln_1.bias",
        "qkv.w": "transformer.h.{i}.attn.c_attn.weight", "qkv.b": "transformer.h.{i}.attn.c_attn.bias",
        "q_norm.w": "transformer.h.{i}.attn.q_norm.weight", "q_norm.b": "transformer.h.{i}.attn.q_norm.bias",
        "k_norm.w": "transformer.h.{i}.attn.k_norm.weight", "k_norm.b": "transformer.h.{i}.attn.k_norm.bias",
        "o.w": "transformer.h.{i}.attn.c_proj.weight", "o.b": "transformer.h.{i}.attn.c_proj.bias",
        "ln2.w": "transformer.h.{i}.ln_2.weight", "ln2.b": "transformer.h.{i}.ln_2.bias",
        "up.w": "transformer.h.{i}.mlp.c_fc.weight", "up.b": "transformer.h.{i}.mlp.c_fc.bias",
        "down.w": "transformer.h.{i}.mlp.c_proj.weight", "down.b": "transformer.h.{i}.mlp.c_proj.bias",
    },
    "llama": {
        "wte": "model.embed_tokens.weight", "ln_f.w": "model.norm.weight", "lm_head": "lm_head.weight",
        "ln1.w": "model.layers.{i}.input_layernorm.weight",
        "q.w": "model.layers.{i}.self_attn.q_proj.weight", "k.w": "model.layers.{i}.self_attn.k_proj.weight",
        "v.w": "model.layers.{i}.self_attn.v_proj.weight", "o.w": "model.layers.{i}.self_attn.o_proj.weight",
        "q.b": "model.layers.{i}.self_attn.q_proj.bias", "k.b": "model.layers.{i}.self_attn.k_proj.bias",
        "v.b": "model.layers.{i}.self_attn.v_proj.bias",
        "q_norm.w": "model.layers.{i}.self_attn.q_norm.weight",
        "k_norm.w": "model.layers.{i}.self_attn.k_norm.weight",
        "ln2.w": "model.layers.{i}.post_attention_layernorm.weight",
        "gate.w": "model.layers.{i}.mlp.gate_proj.weight", "up.w": "model.layers.{i}.mlp.up_proj.weight",
        "down.w": "model.layers.{i}.mlp.down_proj.weight",
    },
}

PRESETS = {
    # tiny shapes for tests and quick experiments (byte-level vocabulary)
    "gpt2-tiny": dict(arch="gpt2", vocab_size=256, n_layer=2, n_head=4, d_model=64, max_seq_len=128),
    "llama-tiny": dict(arch="llama", vocab_size=256, n_layer=2, n_head=4, n_kv_head=2, d_model=64,
                       ffn_dim=176, max_seq_len=128),
    # what `minillm train` trains by default: ~5 minutes on 2 cores
    "llama-small": dict(arch="llama", vocab_size=4096, n_layer=4, n_head=4, n_kv_head=2, d_model=256,
                        ffn_dim=688, max_seq_len=256),
    # the training-benchmark model (examples/bench_train.py)
    "gpt2-6l": dict(arch="gpt2", vocab_size=8192, n_layer=6, n_head=6, d_model=384, max_seq_len=256),
    "llama-6l": dict(arch="llama", vocab_size=8192, n_layer=6, n_head=6, d_model=384, ffn_dim=1024,
                     max_seq_len=256),
    # full-size shapes
    "gpt2": dict(arch="gpt2", vocab_size=50257, n_layer=12, n_head=12, d_model=768, max_seq_len=1024),
    "llama-134m": dict(arch="llama", vocab_size=32000, n_layer=12, n_head=12, d_model=768, ffn_dim=2048,
                       max_seq_len=2048),
    # TinyLlama-1.1B's shape: weights that outgrow a last-level cache (decode benchmarks from DRAM)
    "llama-1.1b": dict(arch="llama", vocab_size=32000, n_layer=22, n_head=32, n_kv_head=4, d_model=2048,
                       ffn_dim=5632, max_seq_len=2048),
}


# Upper bounds on a config's sizes. Configs arrive from files (config.json, GGUF metadata,
# state.json) and drive loops and allocations (param_shapes walks every layer): one bad field must
# be an error, not unbounded memory. Each bound is far above any released model (Llama 3 405B:
# 126 layers, d_model 16384, 128 heads, ffn 53248, vocab 128256; contexts up to 10M tokens).
CONFIG_LIMITS = {"vocab_size": 2**24, "n_layer": 1024, "n_head": 1024, "n_kv_head": 1024, "d_model": 2**16,
                 "ffn_dim": 2**20, "max_seq_len": 2**24}


@dataclass
class ModelConfig:
    arch: str = "llama"            # "gpt2" | "llama": norm, MLP, positions, biases and names
    vocab_size: int = 256          # V
    n_layer: int = 2               # L
    n_head: int = 4                # H
    n_kv_head: int = None          # Hkv (grouped-query attention); None means n_head
    d_model: int = 64              # C
    ffn_dim: int = None            # F; None means 4C (gpt2) or the Llama rule 2/3 * 4C rounded up to 16
    max_seq_len: int = 128         # longest sequence (size of the learned position table for gpt2)
    norm_eps: float = None         # None means 1e-5 (gpt2 LayerNorm) or 1e-6 (llama RMSNorm)
    rope_theta: float = 10000.0    # RoPE base
    rope_scaling: dict = None      # Hugging Face style rope_scaling dict, see nn/rope.py
    tie_embeddings: bool = None    # None means True for gpt2, False for llama
    qk_norm: bool = False          # normalise q and k per head (the model's norm, weights (D,))
    z_loss: float = 0.0            # coefficient of the z-loss term in loss_and_grads
    init_std: float = 0.02
    position: str = None           # None: the flavour's (learned / rope); "alibi": linear attention biases
    attn_bias: bool = False        # llama flavour: biases on the q/k/v projections (Qwen2)

    def __post_init__(self):
        if self.arch not in NAMES:
            raise ValueError(f"arch: expected one of {sorted(NAMES)}, got {self.arch!r}")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.d_model if self.arch == "gpt2" else ceil_div(8 * self.d_model // 3, 16) * 16
        if self.norm_eps is None:
            self.norm_eps = 1e-5 if self.arch == "gpt2" else 1e-6
        if self.tie_embeddings is None:
            self.tie_embeddings = self.arch == "gpt2"
        for name, hi in CONFIG_LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ValueError(f"{name}: expected an int in [1, {hi}], got {v!r}")
        for name, lo in (("norm_eps", "> 0"), ("rope_theta", "> 0"), ("z_loss", ">= 0"), ("init_std", ">= 0")):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool) or \
                    not math.isfinite(v) or not (v > 0 if lo == "> 0" else v >= 0):
                raise ValueError(f"{name}: expected a finite number {lo}, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model: must be divisible by n_head={self.n_head}, got {self.d_model}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head: must divide n_head={self.n_head}, got {self.n_kv_head}")
        if self.arch == "gpt2" and self.n_kv_head != self.n_head:
            raise ValueError("n_kv_head: the gpt2 flavour has a fused QKV projection; use arch='llama' for GQA")
        if self.position not in (None, "alibi", "learned" if self.arch == "gpt2" else "rope"):
            raise ValueError(f"position: expected None or 'alibi', got {self.position!r}")
        if self.attn_bias and self.arch != "llama":
            raise ValueError("attn_bias: only the llama flavour takes separate q/k/v biases (gpt2 has its own)")
        if self.position_scheme == "rope" and self.head_dim % 2:
            raise ValueError(f"d_model/n_head: RoPE needs an even head dimension, got {self.head_dim}")

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"name: unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self):
        return dataclasses.asdict(self)

    # --- what the flavour implies
    @property
    def head_dim(self):
        return self.d_model // self.n_head

    @property
    def norm(self):
        return "layernorm" if self.arch == "gpt2" else "rmsnorm"

    @property
    def bias(self):
        return self.arch == "gpt2"

    @property
    def position_scheme(self):
        """How the model knows token positions: "learned" (gpt2), "rope" (llama) or "alibi".
        (Not to be confused with a KV cache's `pos`, the number of slots it holds.)"""
        return self.position or ("learned" if self.arch == "gpt2" else "rope")

    # --- parameter shapes, counts and FLOPs
    def param_shapes(self):
        """Ordered {HF name: shape}, in the order Hugging Face lists them."""
        C, F, V, D = self.d_model, self.ffn_dim, self.vocab_size, self.head_dim
        Ckv = self.n_kv_head * D
        names = NAMES[self.arch]
        norm_b = self.norm == "layernorm"
        shapes = {names["wte"]: (V, C)}
        if self.position_scheme == "learned":
            shapes[names["wpe"]] = (self.max_seq_len, C)
        for i in range(self.n_layer):
            layer = {"ln1.w": (C,), "ln1.b": (C,) if norm_b else None}
            if self.arch == "gpt2":
                layer.update({"qkv.w": (C + 2 * Ckv, C), "qkv.b": (C + 2 * Ckv,)})
            else:
                layer.update({"q.w": (C, C), "k.w": (Ckv, C), "v.w": (Ckv, C)})
                if self.attn_bias:
                    layer.update({"q.b": (C,), "k.b": (Ckv,), "v.b": (Ckv,)})
            if self.qk_norm:
                layer.update({"q_norm.w": (D,), "q_norm.b": (D,) if norm_b else None,
                              "k_norm.w": (D,), "k_norm.b": (D,) if norm_b else None})
            layer.update({"o.w": (C, C), "o.b": (C,) if self.bias else None,
                          "ln2.w": (C,), "ln2.b": (C,) if norm_b else None})
            if self.arch == "llama":
                layer["gate.w"] = (F, C)
            layer.update({"up.w": (F, C), "up.b": (F,) if self.bias else None,
                          "down.w": (C, F), "down.b": (C,) if self.bias else None})
            shapes.update({names[r].format(i=i): s for r, s in layer.items() if s is not None})
        shapes[names["ln_f.w"]] = (C,)
        if norm_b:
            shapes[names["ln_f.b"]] = (C,)
        if not self.tie_embeddings:
            shapes[names["lm_head"]] = (V, C)
        return shapes

    def num_params(self, non_embedding=False):
        n = sum(int(np.prod(s)) for s in self.param_shapes().values())
        if non_embedding:
            n -= self.vocab_size * self.d_model + (self.max_seq_len * self.d_model if self.position_scheme == "learned" else 0)
        return n

    def flops_per_token(self, seq_len=None, training=True):
        """Matmul FLOPs per token (Kaplan et al. 2020, Table 1; PaLM appendix B): forward
        2 N_matmul + 4 L T C for the attention scores and weighted sum (full T x T, as PaLM counts);
        training is 3x forward (backward costs twice the forward)."""
        T = self.max_seq_len if seq_len is None else seq_len
        n_matmul = self.num_params(non_embedding=True)  # an untied lm_head is already counted here
        if self.tie_embeddings:
            n_matmul += self.vocab_size * self.d_model  # the tied head reuses wte: count it once
        fwd = 2 * n_matmul + 4 * self.n_layer * T * self.d_model
        return 3 * fwd if training else fwd


def init_params(cfg, seed=0):
    """GPT-2 initialisation (Radford et al. 2019, Sec. 2.3): N(0, 0.02) weights, residual output
    projections scaled by 1/sqrt(2L), zero biases, unit norm weights."""
    rng = np.random.default_rng(seed)
    params = {}
    resid = {NAMES[cfg.arch][r].format(i=i) for r in ("o.w", "down.w") for i in range(cfg.n_layer)}
    for name, shape in cfg.param_shapes().items():
        if len(shape) == 1:
            fill = 1.0 if name.endswith("weight") else 0.0
            params[name] = np.full(shape, fill, dtype=np.float32)
        else:
            std = cfg.init_std / np.sqrt(2 * cfg.n_layer) if name in resid else cfg.init_std
            params[name] = (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)
    return params


class BlockCache(NamedTuple):
    """What one block's forward keeps for its backward (N = B*T rows, F the MLP width). Each entry
    is the cache of the layer named, None where the config has no such layer (or, for attention,
    when an attention hook ran it)."""
    ln1: tuple         # first norm's cache; input x (B, T, C)
    proj: tuple        # linear caches: (qkv,) fused (gpt2), or (q, k, v) (llama); inputs (N, C)
    q_norm: tuple      # QK-norm of q (B, H, T, D), or None
    k_norm: tuple      # QK-norm of k (B, Hkv, T, D), or None
    rope_q: tuple      # rotation tables (T, D/2) x 2 for q, or None
    rope_k: tuple      # the same for k, or None
    attn: tuple        # nn.attention.AttentionCache (segmented: bounds and one per document)
    o: tuple           # output projection's cache; input (N, C)
    ln2: tuple         # second norm's cache; input x1 (B, T, C), the residual after attention
    up: tuple          # up projection's cache; input (N, C)
    gate: tuple        # gate projection's cache (llama), else None; input (N, C)
    act: tuple         # GELU (gpt2) or SwiGLU (llama) cache; inputs (N, F)
    down: tuple        # down projection's cache; input (N, F)


class ForwardCache(NamedTuple):
    """What the model's forward keeps for backward (see _forward)."""
    tokens: np.ndarray   # (B, T) int
    wte: tuple           # token embedding's cache
    wpe: tuple           # position embedding's cache (learned positions), else None
    rope_cs: tuple       # RoPE (cos, sin), (T, D/2) each, else None
    blocks: list         # per layer: BlockCache, or the block's input x (B, T, C) when checkpointing
    ln_f: tuple          # final norm's cache
    head: tuple          # LM head's linear cache: (h (B*T, C), W (V, C), None); None when quantized
    checkpoint: bool     # True: blocks holds inputs, and backward recomputes each block
    bounds: list         # [(start, end)] of packed documents, or None

    @property
    def hidden(self):  # (B*T, C): the final norm's output, the LM head's input
        return self.head[0]

    def nbytes(self, exclude=()):
        """Bytes of the arrays held here (each buffer once; views count their base), except those
        whose buffers are in `exclude` (e.g. the parameters the linear caches point to)."""
        skip = {id(a) for a in exclude}
        seen, total, stack = set(), 0, [tuple(self)]
        while stack:
            obj = stack.pop()
            if isinstance(obj, np.ndarray):
                base = obj if obj.base is None else obj.base
                if id(base) not in seen and id(base) not in skip and isinstance(base, np.ndarray):
                    seen.add(id(base))
                    total += base.nbytes
            elif isinstance(obj, (tuple, list)):
                stack.extend(obj)
        return total


class Transformer:
    """A decoder-only Transformer whose parameters are a flat ordered dict of arrays."""

    def __init__(self, config, seed=0, params=None, quantized=None):
        """params: {name: float32 array} (default: init_params(config, seed)). quantized: optional
        {name: object with .matmul(x (N, in)) -> (N, out) and .shape (out, in)} replacing those
        weights in the forward pass (minillm.quant); such names may be absent from params."""
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config: expected ModelConfig, got {type(config).__name__}")
        self.config = config
        self.params = init_params(config, seed) if params is None else params
        self.quantized = dict(quantized or {})
        expected = config.param_shapes()
        have = {**{k: tuple(q.shape) for k, q in self.quantized.items()},
                **{k: a.shape for k, a in self.params.items()}}
        if set(have) != set(expected) or any(have[k] != s for k, s in expected.items()) or \
                list(self.params) != [k for k in expected if k in self.params]:
            missing = sorted(set(expected) - set(have))
            extra = sorted(set(have) - set(expected))
            wrong = [k for k in expected if k in have and have[k] != expected[k]]
            raise ValueError(f"params: do not match the config (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}, wrong shape {wrong[:3]})")
        n = NAMES[config.arch]
        self.layer_names = [{r: v.format(i=i) for r, v in n.items() if "{i}" in v}
                             for i in range(config.n_layer)]
        inv_freq, attn_factor = rope_parameters(config.head_dim, config.rope_theta, config.rope_scaling,
                                                config.max_seq_len)
        self._inv_freq, self._rope_factor = inv_freq, attn_factor
        # ALiBi head slopes (H,), for attention hooks too; None unless config.position_scheme == "alibi"
        self.alibi_slopes = alibi_slopes(config.n_head) if config.position_scheme == "alibi" else None

    # ------------------------------------------------------------------ helpers
    def _linear(self, x, names, role):  # (N, Cin) -> (N, Cout), cache
        """The linear layer of `role` in a layer's name table (see _matmul)."""
        return self._matmul(x, names[role + ".w"], self._p(names, role + ".b"))

    def _matmul(self, x, weight, b=None):  # (N, Cin) -> (N, Cout), cache
        """x @ W^T + b for the parameter named `weight`: its quantized kernel when the model holds
        one (forward only, cache None), else linear_forward on the float32 weight."""
        q = self.quantized.get(weight)
        if q is None:
            return linear_forward(x, self.params[weight], b)
        y = q.matmul(x)                                                          # (N, Cout)
        return (y + b if b is not None else y), None

    def _linears(self, x, names, roles, stacked=False):  # (N, Cin) -> [((N, Cout_r), cache)] for each role
        """_linear for several roles that read the same x; when all are float32 they share one
        kernel call (one parallel region per group at decode instead of one per weight).
        stacked: outputs may be column views of one product (see nn.linear.linear_forward_group)."""
        if any(names[r + ".w"] in self.quantized for r in roles):
            return [self._linear(x, names, r) for r in roles]
        return linear_forward_group(x, [self.params[names[r + ".w"]] for r in roles],
                                    [self._p(names, r + ".b") for r in roles], stacked)

    def _p(self, names, role):
        """The parameter of `role` in a layer's name table, or None where the config has none."""
        return self.params.get(names.get(role, ""))

    def _norm_forward(self, x, w, b):
        if self.config.norm == "layernorm":
            return layernorm_forward(x, w, b, self.config.norm_eps)
        return rmsnorm_forward(x, w, self.config.norm_eps)

    def _norm_backward(self, dy, cache):  # -> dx, dw, db (db None for RMSNorm)
        if self.config.norm == "layernorm":
            return layernorm_backward(dy, cache)
        return (*rmsnorm_backward(dy, cache), None)

    def check_tokens(self, tokens, name="tokens"):  # -> (B, T) int array, ids in [0, V)
        """tokens as a 2-D int array (a 1-D one becomes one row), or a ValueError naming them."""
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[None, :]
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected an int array (B, T), got shape {tokens.shape} dtype {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ValueError(f"{name}: ids must lie in [0, {self.config.vocab_size}), "
                             f"got [{tokens.min()}, {tokens.max()}]")
        return tokens

    # ------------------------------------------------------------------ one block
    def _block_forward(self, l, x, rope_cs, attend=None, bounds=None):  # x (B, T, C) -> (B, T, C), cache
        """attend(l, q, k, v) -> (B, H, T, D), when given, replaces causal self-attention over the
        block's own keys: KV caches (contiguous or paged) plug in here. bounds: [(start, end)] of
        packed documents; attention then stays causal within each one (differentiable)."""
        cfg, n = self.config, self.layer_names[l]
        B, T, C = x.shape
        H, Hkv, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        h, c_ln1 = self._norm_forward(x, self._p(n, "ln1.w"), self._p(n, "ln1.b"))  # (B, T, C)
        h2 = h.reshape(B * T, C)
        if "qkv.w" in n:  # fused projection, split afterwards
            qkv, c_qkv = self._linear(h2, n, "qkv")                              # (B*T, C+2Ckv)
            q, k, v = np.split(qkv, [C, C + Hkv * D], axis=1)
            c_proj = (c_qkv,)
        else:
            (q, c_q), (k, c_k), (v, c_v) = self._linears(h2, n, ("q", "k", "v"), stacked=True)
            c_proj = (c_q, c_k, c_v)
        q = np.ascontiguousarray(q.reshape(B, T, H, D).transpose(0, 2, 1, 3))     # (B, H, T, D)
        k = np.ascontiguousarray(k.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3))   # (B, Hkv, T, D)
        v = np.ascontiguousarray(v.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3))   # (B, Hkv, T, D)
        c_qn = c_kn = c_rq = c_rk = None
        if cfg.qk_norm:
            q, c_qn = self._norm_forward(q, self._p(n, "q_norm.w"), self._p(n, "q_norm.b"))
            k, c_kn = self._norm_forward(k, self._p(n, "k_norm.w"), self._p(n, "k_norm.b"))
        if cfg.position_scheme == "rope":
            q, c_rq = rope_forward(q, *rope_cs)
            k, c_rk = rope_forward(k, *rope_cs)
        if attend is None and cfg.position_scheme == "alibi":
            if bounds is not None:
                raise ValueError("segments: packed sequences are not supported with ALiBi")
            a, c_att = alibi_attention_forward(q, k, v, self.alibi_slopes)       # (B, H, T, D)
        elif attend is None and bounds is not None:
            a, c_att = segmented_attention_forward(q, k, v, bounds)               # (B, H, T, D)
        elif attend is None:
            a, c_att = attention_forward(q, k, v)                                 # (B, H, T, D)
        else:
            a, c_att = attend(l, q, k, v), None
        a2 = np.ascontiguousarray(a.transpose(0, 2, 1, 3)).reshape(B * T, C)     # (B*T, C)
        o, c_o = self._linear(a2, n, "o")                                        # (B*T, C)
        x1 = x + o.reshape(B, T, C)                                              # residual
        h, c_ln2 = self._norm_forward(x1, self._p(n, "ln2.w"), self._p(n, "ln2.b"))
        h2 = h.reshape(B * T, C)
        if cfg.arch == "llama":
            (gate, c_gate), (up, c_up) = self._linears(h2, n, ("gate", "up"))    # (B*T, F) each
            act, c_act = swiglu_forward(gate, up)
        else:
            up, c_up = self._linear(h2, n, "up")                                 # (B*T, F)
            c_gate = None
            act, c_act = gelu_forward(up)
        m, c_down = self._linear(act, n, "down")                                 # (B*T, C)
        y = x1 + m.reshape(B, T, C)                                              # residual
        return y, BlockCache(c_ln1, c_proj, c_qn, c_kn, c_rq, c_rk, c_att, c_o, c_ln2, c_up, c_gate, c_act,
                             c_down)

    def _block_backward(self, l, dy, cache, bounds=None):  # dy (B, T, C) -> dx (B, T, C), {name: grad}
        cfg, n = self.config, self.layer_names[l]
        B, T, C = dy.shape
        H, Hkv, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        g = {}

        def put(role, value):
            if value is not None:
                g[n[role]] = value

        dy2 = dy.reshape(B * T, C)
        dact, dw, db = linear_backward(dy2, cache.down)                        # y = x1 + down(act)
        put("down.w", dw), put("down.b", db)
        if cfg.arch == "llama":
            dgate, dup = swiglu_backward(dact, cache.act)
            dh2, dw, _ = linear_backward(dgate, cache.gate)
            put("gate.w", dw)
        else:
            dup = gelu_backward(dact, cache.act)
            dh2 = None
        dh_up, dw, db = linear_backward(dup, cache.up)
        put("up.w", dw), put("up.b", db)
        if dh2 is None:                                                          # (B*T, C)
            dh2 = dh_up
        else:                       # every array added to in place here is a fresh kernel output
            dh2 += dh_up
        dx1, dw, db = self._norm_backward(dh2.reshape(B, T, C), cache.ln2)
        put("ln2.w", dw), put("ln2.b", db)
        dx1 += dy                                                                # residual
        da2, dw, db = linear_backward(dx1.reshape(B * T, C), cache.o)
        put("o.w", dw), put("o.b", db)
        da = da2.reshape(B, T, H, D).transpose(0, 2, 1, 3)                       # (B, H, T, D)
        if cfg.position_scheme == "alibi":
            dq, dk, dv = alibi_attention_backward(da, cache.attn)
        else:
            dq, dk, dv = (attention_backward if bounds is None else segmented_attention_backward)(da, cache.attn)
        if cfg.position_scheme == "rope":
            dq, dk = rope_backward(dq, cache.rope_q), rope_backward(dk, cache.rope_k)
        if cfg.qk_norm:
            dq, dw, db = self._norm_backward(dq, cache.q_norm)
            put("q_norm.w", dw), put("q_norm.b", db)
            dk, dw, db = self._norm_backward(dk, cache.k_norm)
            put("k_norm.w", dw), put("k_norm.b", db)
        # the three head-major gradients land side by side in one (B*T, C+2Ckv) array (one copy)
        dqkv = np.empty((B, T, H + 2 * Hkv, D), dtype=dq.dtype)                 # (B, T, H+2Hkv, D)
        for d, lo, hi in ((dq, 0, H), (dk, H, H + Hkv), (dv, H + Hkv, H + 2 * Hkv)):
            dqkv[:, :, lo:hi] = d.transpose(0, 2, 1, 3)
        dqkv = dqkv.reshape(B * T, -1)
        if "qkv.w" in n:
            dh2, dw, db = linear_backward(dqkv, cache.proj[0])
            put("qkv.w", dw), put("qkv.b", db)
        else:  # separate q, k, v weights read the same input: one GEMM for all three gradients
            dh2, dws, dbs = linear_backward_group(dqkv, cache.proj)
            for role, dw, db in zip("qkv", dws, dbs):
                put(role + ".w", dw), put(role + ".b", db)
        dx, dw, db = self._norm_backward(dh2.reshape(B, T, C), cache.ln1)
        put("ln1.w", dw), put("ln1.b", db)
        dx += dx1                                                                # residual
        return dx, g

    # ------------------------------------------------------------------ whole model
    def _forward(self, tokens, keep_caches=True, checkpoint=False, positions=None, attend=None,
                 segments=None, columns=None):
        """tokens (B, T) -> logits (B*T, V) and the caches for backward. With checkpoint=True only
        each block's input is kept; _backward recomputes the block (Chen et al. 2016).
        positions (T,) int: each column's position (default 0..T-1); attend: see _block_forward;
        segments (T,) int: document ids of packed sequences (see forward_train); columns (K,) int:
        the head runs on these columns only -> logits (B*K, V) (inference: no caches then)."""
        cfg, p, names = self.config, self.params, NAMES[self.config.arch]
        B, T = tokens.shape
        positions = np.arange(T) if positions is None else np.asarray(positions)
        if positions.shape != (T,):
            raise ValueError(f"positions: expected shape ({T},), got {positions.shape}")
        if cfg.position_scheme == "learned" and T and positions.max() >= cfg.max_seq_len:
            raise ValueError(f"tokens: position {positions.max()} exceeds max_seq_len {cfg.max_seq_len}")
        bounds = None if segments is None else segment_bounds(segments, T)
        x, c_wte = embedding_forward(tokens, p[names["wte"]])                    # (B, T, C)
        c_wpe = None
        if cfg.position_scheme == "learned":
            pe, c_wpe = embedding_forward(positions, p[names["wpe"]])            # (T, C)
            x = x + pe
        rope_cs = None
        if cfg.position_scheme == "rope":
            rope_cs = self.rope_tables(positions, x.dtype)                       # 2 x (T, D/2)
        blocks = []
        for l in range(cfg.n_layer):
            x_in = x
            x, cache = self._block_forward(l, x, rope_cs, attend, bounds)
            blocks.append(x_in if checkpoint else (cache if keep_caches else None))
        if columns is not None:
            if keep_caches:
                raise ValueError("columns: only for inference (keep_caches=False)")
            x = x[:, columns]
        logits, c_lnf, c_head = self.head(x)
        return logits, ForwardCache(tokens, c_wte, c_wpe, rope_cs, blocks, c_lnf, c_head, checkpoint, bounds)

    @property
    def head_weight(self):
        """Name of the LM head's weight (V, C): the token embedding when they are tied."""
        names = NAMES[self.config.arch]
        return names["wte"] if self.config.tie_embeddings else names["lm_head"]

    def head(self, x):  # x (B, T, C) -> logits (B*T, V), caches of the final norm and the head
        """The final norm and the LM head (no bias in either flavour)."""
        cfg, p, names = self.config, self.params, NAMES[self.config.arch]
        h, c_lnf = self._norm_forward(x, p[names["ln_f.w"]], p.get(names.get("ln_f.b", "")))
        logits, c_head = self._matmul(h.reshape(-1, cfg.d_model), self.head_weight)
        return logits, c_lnf, c_head

    def rope_tables(self, positions, dtype=np.float32):  # (T,) int -> cos, sin (T, D/2) each
        """The RoPE rotation of each position, with this model's frequencies and scaling."""
        return rope_tables(positions, self._inv_freq, self._rope_factor, dtype)

    def _backward(self, dlogits, caches, dhidden=None, on_grads=None):  # dlogits (B*T, V) -> {name: grad}
        """on_grads({name: grad}), when given, is called as each group of gradients is final, in the
        order backward produces them (head, blocks L-1..0, embeddings): data-parallel training
        starts communicating a bucket while the earlier layers are still differentiating."""
        cfg, p, names = self.config, self.params, NAMES[self.config.arch]
        ready = on_grads or (lambda g: None)
        if caches.head is None:
            raise ValueError("model: quantized models are inference-only (no backward pass)")
        B, T = caches.tokens.shape
        grads = {}
        if dlogits is None:  # only the hidden states feed the loss (e.g. a reward head)
            dh = np.zeros((B * T, cfg.d_model), dtype=caches.hidden.dtype)
            dlm = np.zeros_like(caches.head[1])                              # (V, C)
        else:
            dh, dlm, _ = linear_backward(dlogits, caches.head)                 # (B*T, C), (V, C)
        if dhidden is not None:
            dh = dh + dhidden.reshape(B * T, cfg.d_model)
        dx, dw, db = self._norm_backward(dh.reshape(B, T, cfg.d_model), caches.ln_f)
        grads[names["ln_f.w"]] = dw
        if db is not None:
            grads[names["ln_f.b"]] = db
        if not cfg.tie_embeddings:
            grads[names["lm_head"]] = dlm
        ready(dict(grads))
        for l in reversed(range(cfg.n_layer)):
            cache = caches.blocks[l]
            if caches.checkpoint:  # recompute this block's forward from its saved input
                cache = self._block_forward(l, cache, caches.rope_cs, bounds=caches.bounds)[1]
            dx, g = self._block_backward(l, dx, cache, caches.bounds)
            grads.update(g)
            ready(g)
        if caches.wpe is not None:
            grads[names["wpe"]] = embedding_backward(dx.sum(axis=0), caches.wpe)
        dwte = embedding_backward(dx, caches.wte)
        if cfg.tie_embeddings:
            dwte += dlm
        grads[names["wte"]] = dwte
        ready({k: grads[k] for k in (names["wte"], names.get("wpe")) if k in grads})
        return {k: grads[k] for k in p}                                          # params' order

    # ------------------------------------------------------------------ public API
    def forward(self, tokens):
        """tokens (B, T) int -> logits (B, T, V) float32. Decoding with a KV cache (tokens at
        positions pos..pos+T-1 attending to the cached ones) is minillm.inference.decode.forward_cached."""
        tokens = self.check_tokens(tokens)
        logits, _ = self._forward(tokens, keep_caches=False)
        return logits.reshape(*tokens.shape, -1)

    def forward_with(self, tokens, positions, attend, columns=None):
        """The forward pass with explicit positions (T,) and an attention hook attend(l, q, k, v)
        -> (B, H, T, D) (see _block_forward): how paged KV caches and packed batches of ragged
        sequences run the model. Returns logits (B, T, V), or (B, K, V) at the K `columns` only
        (a packed batch samples from each sequence's last column: the LM head, a (V, C) GEMM, then
        runs on those alone). For an ALiBi model the hook must add the bias:
        nn.alibi.alibi_attention_forward(q, k_all, v_all, self.alibi_slopes)[0]."""
        tokens = self.check_tokens(tokens)
        if columns is not None:
            columns = np.asarray(columns, dtype=np.int64)
            if columns.ndim != 1 or columns.size and (columns.min() < 0 or columns.max() >= tokens.shape[1]):
                raise ValueError(f"columns: expected 1-D indices into {tokens.shape[1]} columns, got {columns}")
        logits, _ = self._forward(tokens, keep_caches=False, positions=positions, attend=attend, columns=columns)
        return logits.reshape(tokens.shape[0], -1, logits.shape[-1])

    def loss_and_grads(self, tokens, targets, checkpoint=False, on_grads=None):
        """Mean next-token cross-entropy (+ z_loss) and its gradient for every parameter.
        tokens, targets (B, T) int; targets < 0 are ignored. -> (loss: float, grads: dict like params).
        on_grads: optional hook called with each group of gradients as backward finishes it."""
        tokens = self.check_tokens(tokens)
        if self.quantized:
            raise ValueError("model: quantized models are inference-only (no backward pass)")
        targets = np.asarray(targets)
        if targets.shape != tokens.shape:
            raise ValueError(f"targets: expected shape {tokens.shape}, got {targets.shape}")
        logits, caches = self._forward(tokens, checkpoint=checkpoint)
        loss, c_loss = cross_entropy_forward(logits, targets.reshape(-1), self.config.z_loss, inplace=True)
        return loss, self._backward(cross_entropy_backward(1.0, c_loss), caches, on_grads=on_grads)

    def forward_train(self, tokens, checkpoint=False, positions=None, segments=None):
        """Forward pass that keeps what backward needs: tokens (B, T) -> (logits (B, T, V),
        hidden (B, T, C) -- the final-norm output that feeds the LM head --, caches). For losses
        other than next-token cross-entropy (reward models, PPO, DPO): compute dlogits and/or
        dhidden yourself, then call backward(caches, dlogits, dhidden).
        Packed sequences (several documents per row, minillm.align.sft): segments (T,) int gives
        each column's document id -- attention is causal within each run of equal ids and never
        crosses into another document -- and positions (T,) restarts at 0 for each document."""
        tokens = self.check_tokens(tokens)
        if self.quantized:
            raise ValueError("model: quantized models are inference-only (no backward pass)")
        logits, caches = self._forward(tokens, checkpoint=checkpoint, positions=positions, segments=segments)
        hidden = caches.hidden.reshape(*tokens.shape, -1)                         # (B, T, C)
        return logits.reshape(*tokens.shape, -1), hidden, caches

    def backward(self, caches, dlogits=None, dhidden=None):
        """Gradients of every parameter given dL/dlogits (B, T, V) and/or dL/dhidden (B, T, C)."""
        if dlogits is not None:
            dlogits = np.ascontiguousarray(dlogits, dtype=caches.hidden.dtype).reshape(caches.tokens.size, -1)
        return self._backward(dlogits, caches, dhidden)

    def loss(self, tokens, targets):
        """Mean next-token cross-entropy (no z-loss, no gradients): for evaluation."""
        tokens = self.check_tokens(tokens)
        logits, _ = self._forward(tokens, keep_caches=False)
        return cross_entropy_forward(logits, np.asarray(targets).reshape(-1))[0]

    def activation_bytes(self, tokens, checkpoint=False):
        """Bytes of the arrays kept between forward and backward for a batch: what activation
        checkpointing saves is activation_bytes(t) - activation_bytes(t, checkpoint=True)."""
        logits, caches = self._forward(self.check_tokens(tokens), checkpoint=checkpoint)
        return logits.nbytes + caches.nbytes(exclude=self.params.values())
