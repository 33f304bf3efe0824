"""A minillm Llama as a GGUF model file: `save_gguf(model, path, dtype)` writes a file llama.cpp
loads, `load_gguf(path)` reads files of every type it writes (and BF16) back into minillm (quantized
tensors stay quantized: minillm.quant.linear.GGMLLinear). The file container (header, metadata,
tensor data) is minillm.io.gguf; this module knows what the tensors and keys mean.

Two conventions differ from Hugging Face's, as llama.cpp's convert_hf_to_gguf.py handles them:
tensor names (NAMES below), and the rows of the q/k projections: HF's rotary embedding rotates the
two halves of each head (rotate_half) where ggml rotates adjacent pairs, so rows are permuted per
head from [first half, second half] to interleaved pairs (_permute_rope; _unpermute_rope on load).
The tokenizer, when given, is stored as a byte-level BPE ("gpt2" model: GPT-2's byte-to-unicode
token strings plus the merge list).
"""
import numpy as np

from ..io.ggml_types import FLOAT_TYPES
from ..io.gguf import (ALIGNMENT, ARRAY, BOOL, F32, I32, STRING, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED, U32,
                       read_gguf, write_gguf)
from ..model import ModelConfig, Transformer
from ..quant.formats import GGML_BLOCKS
from ..quant.ggml_quants import dequantize_blocks, quantize_blocks
from ..quant.linear import GGMLLinear
from ..tokenizer import BPETokenizer, ByteTokenizer, patterns
from ..tokenizer.bpe_io import from_vocab_and_merges, to_gpt2
from ..tokenizer.gguf_vocab import tokenizer_from_gguf, tokenizer_to_gguf
from ..tokenizer.pretrained import PretrainedTokenizer

ARCHITECTURES = ("llama", "qwen2")
# llama_ftype of a file written in one type (the K-quants as their _S file types); llama.cpp's mixed
# file types (Q4_K_M ...) are minillm.loaders.gguf_quantize's
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q2_K": 10, "q3_K": 11,
             "q4_K": 14, "q5_K": 16, "q6_K": 18}
DTYPES = tuple(FILE_TYPE)
# Hugging Face Llama name -> GGUF name ("{i}" = layer)
NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight",
         "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
         "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
         "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
         "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
         "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
         "model.layers.{i}.self_attn.q_proj.bias": "blk.{i}.attn_q.bias",
         "model.layers.{i}.self_attn.k_proj.bias": "blk.{i}.attn_k.bias",
         "model.layers.{i}.self_attn.v_proj.bias": "blk.{i}.attn_v.bias",
         "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
         "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
         "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
         "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight"}
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<|endoftext|>")
EOS_NAMES = ("<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>")


# ------------------------------------------------------------------ rotary layout
def _permute_rope(w, n_head):  # (n_head * D, C): HF rotate-half rows -> ggml interleaved pairs
    D = w.shape[0] // n_head
    return w.reshape(n_head, 2, D // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute_rope(w, n_head):  # inverse of _permute_rope
    D = w.shape[0] // n_head
    return w.reshape(n_head, D // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_name(hf_name):  # also gguf_name: "model.layers.3.mlp.down_proj.weight" -> "blk.3.ffn_down.weight"
    for hf, gg in NAMES.items():
        if "{i}" not in hf:
            if hf == hf_name:
                return gg
            continue
        pre, post = hf.split("{i}")
        if hf_name.startswith(pre) and hf_name.endswith(post):
            i = hf_name[len(pre):len(hf_name) - len(post)]
            if i.isdigit():
                return gg.format(i=i)
    raise ValueError(f"model: parameter {hf_name!r} has no GGUF name")


# ------------------------------------------------------------------ writing
def _typed(key, value):
    """(key, GGUF value type, value) of a plain Python metadata value."""
    if isinstance(value, bool):
        return key, BOOL, value
    if isinstance(value, (int, np.integer)):
        return key, U32, int(value)
    if isinstance(value, float):
        return key, F32, value
    if isinstance(value, str):
        return key, STRING, value
    etype = STRING if value and isinstance(value[0], str) else F32 if value and isinstance(value[0], float) else I32
    return key, ARRAY, (etype, value)


def _tokenizer_kvs(tok, vocab_size):
    """GGUF tokenizer metadata: a published model's tokenizer as it came (gguf_vocab), or a minillm
    byte-level BPE (or ByteTokenizer) as model "gpt2" with its exact pattern."""
    if isinstance(tok, PretrainedTokenizer):
        return [_typed(k, v) for k, v in tokenizer_to_gguf(tok, vocab_size)]
    vocab = getattr(tok, "vocab", None)
    if vocab is None:  # ByteTokenizer: the 256 bytes, no merges
        vocab, merges, special, pattern = {i: bytes([i]) for i in range(256)}, [], {}, ""
    else:
        merges = tok.merge_list()
        special, pattern = dict(tok.special_tokens), tok.pattern
    if max(list(vocab) + list(special.values())) >= vocab_size:
        raise ValueError(f"tokenizer: ids reach {tok.vocab_size}, beyond the model's vocab_size {vocab_size}")
    inv_special = {i: s for s, i in special.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in vocab:
            tokens.append(to_gpt2(vocab[i]))
            types.append(TOKEN_NORMAL)
        elif i in inv_special:
            tokens.append(inv_special[i])
            types.append(TOKEN_CONTROL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    kvs = [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "default"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
           ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
           ("tokenizer.ggml.merges", ARRAY, (STRING, [f"{to_gpt2(vocab[a])} {to_gpt2(vocab[b])}" for a, b in merges])),
           ("minillm.tokenizer.pattern", STRING, pattern)]
    for key, names in (("bos", BOS_NAMES), ("eos", EOS_NAMES)):
        ids = [special[n] for n in names if n in special]
        if ids:
            kvs.append((f"tokenizer.ggml.{key}_token_id", U32, ids[0]))
    return kvs


def _tensor_payload(name, w, dtype):
    """(ggml type name, bytes) of one tensor: 1-D tensors stay F32 (as llama.cpp's converter keeps
    norms); a row length the block format cannot split falls back (q4_K -> q4_0 -> f16, ...)."""
    if w.ndim == 1 or dtype == "f32":
        return "f32", np.ascontiguousarray(w, dtype="<f4").tobytes()
    if dtype in ("q2_K", "q3_K", "q4_0", "q4_1", "q4_K", "q5_0", "q5_1", "q5_K"):
        if name == "output.weight" and w.shape[1] % 256 == 0:
            dtype = "q6_K"  # llama.cpp keeps the output matrix at 6 bits in its files of fewer bits
    k_fallback = {"q2_K": "q4_0", "q3_K": "q4_0", "q4_K": "q4_0", "q5_K": "q5_1", "q6_K": "q8_0"}
    chain = [dtype, k_fallback[dtype], "f16"] if dtype in k_fallback else [dtype, "f16"]
    for t in chain:
        if t == "f16":
            return "f16", np.ascontiguousarray(w, dtype="<f2").tobytes()
        if w.shape[1] % GGML_BLOCKS[t][1] == 0:
            return t, quantize_blocks(w, t).tobytes()


def _check_savable(model, dtype):
    if not isinstance(model, Transformer):
        raise TypeError(f"model: expected a minillm Transformer, got {type(model).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    cfg = model.config
    if cfg.arch != "llama":
        raise ValueError(f"model: only the Llama architecture is written as GGUF, got {cfg.arch!r}")
    if cfg.qk_norm or cfg.rope_scaling:
        raise ValueError("model: qk_norm / rope_scaling have no llama GGUF equivalent here")
    if model.quantized:
        raise ValueError("model: pass the float model; save_gguf quantizes with ggml's own formats")


def gguf_contents(model, tokenizer=None, dtype="f32"):
    """-> (metadata [(key, type, value)], [(GGUF tensor name, float32 weight in GGUF row order)]) of a
    minillm Llama model: what save_gguf writes, before any quantization."""
    _check_savable(model, dtype)
    cfg = model.config
    kvs = [("general.architecture", STRING, "llama"), ("general.name", STRING, "minillm"),
           ("general.alignment", U32, ALIGNMENT), ("general.file_type", U32, FILE_TYPE[dtype]),
           ("llama.vocab_size", U32, cfg.vocab_size), ("llama.context_length", U32, cfg.max_seq_len),
           ("llama.embedding_length", U32, cfg.d_model), ("llama.block_count", U32, cfg.n_layer),
           ("llama.feed_forward_length", U32, cfg.ffn_dim), ("llama.attention.head_count", U32, cfg.n_head),
           ("llama.attention.head_count_kv", U32, cfg.n_kv_head),
           ("llama.rope.dimension_count", U32, cfg.head_dim),
           ("llama.rope.freq_base", F32, float(cfg.rope_theta)),
           ("llama.attention.layer_norm_rms_epsilon", F32, float(cfg.norm_eps))]
    if tokenizer is not None:
        kvs += _tokenizer_kvs(tokenizer, cfg.vocab_size)
    else:
        kvs.append(("tokenizer.ggml.model", STRING, "no_vocab"))
    tensors = []
    for hf_name, w in model.params.items():
        gg = _gguf_name(hf_name)
        if gg.endswith("attn_q.weight"):
            w = _permute_rope(w, cfg.n_head)
        elif gg.endswith("attn_k.weight"):
            w = _permute_rope(w, cfg.n_kv_head)
        tensors.append((gg, np.ascontiguousarray(w, dtype=np.float32)))
    return kvs, tensors


def save_gguf(model, path, dtype="f32", tokenizer=None):
    """Write a minillm Llama model as GGUF with 2-D weights in `dtype` (a key of FILE_TYPE: "f32",
    "f16", or any ggml type minillm writes, "q4_0" ... "q6_K"); tokenizer (minillm BPE or
    ByteTokenizer) adds the vocabulary metadata.
    For llama.cpp's mixed file types (Q4_K_M ...) see minillm.loaders.gguf_quantize."""
    kvs, named = gguf_contents(model, tokenizer, dtype)
    tensors = []
    for gg, w in named:
        type_name, blob = _tensor_payload(gg, w, dtype)
        tensors.append((gg, type_name, w.shape, blob))
    write_gguf(path, kvs, tensors)


def _read_own_tokenizer(meta):
    """The vocabulary save_gguf wrote (it records its exact pattern) as a BPETokenizer, or a
    ByteTokenizer for 256 bare bytes."""
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type", [])
    merges = meta.get("tokenizer.ggml.merges", [])
    vocab_str, special = {}, {}
    for i, s in enumerate(tokens):
        ty = types[i] if i < len(types) else TOKEN_NORMAL
        if ty == TOKEN_CONTROL:
            special[s] = i
        elif ty != TOKEN_UNUSED:
            vocab_str[s] = i
    if not merges and not special and [vocab_str.get(to_gpt2(bytes([b]))) for b in range(256)] == list(range(256)) \
            and len(vocab_str) == 256:
        return ByteTokenizer()
    pattern = meta.get("minillm.tokenizer.pattern") or patterns.CL100K
    return from_vocab_and_merges(BPETokenizer, {**vocab_str, **special}, merges, pattern, special,
                                 "tokenizer.ggml.tokens")


def _read_tokenizer(meta, path):
    """The file's tokenizer: minillm's own BPE for files save_gguf wrote, else the published
    vocabulary as a PretrainedTokenizer ("gpt2" or "llama"); None for a file without one."""
    if meta.get("tokenizer.ggml.model") == "gpt2" and "minillm.tokenizer.pattern" in meta:
        return _read_own_tokenizer(meta)
    return tokenizer_from_gguf(meta, path)


def _config(path, meta, tensors):
    """ModelConfig from the {arch}.* metadata keys and the token embedding's shape."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: general.architecture {arch!r} is not supported (minillm reads "
                         f"{', '.join(ARCHITECTURES)})")
    def num(key, kind, default=None):  # a metadata value of the expected kind, or a ValueError
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise ValueError(f"{path}: missing GGUF metadata '{arch}.{key}'")
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise ValueError(f"{path}: GGUF metadata '{arch}.{key}': expected {kind.__name__}, got {value!r}")
        return kind(value)

    if "token_embd.weight" not in tensors:
        raise ValueError(f"{path}: missing GGUF tensor 'token_embd.weight'")
    n_layer = num("block_count", int)
    blocks = {name.split(".")[1] for name in tensors if name.startswith("blk.")}
    if n_layer != len(blocks):   # checked before any per-layer work: the count is the file's claim
        raise ValueError(f"{path}: '{arch}.block_count' is {n_layer}, the file holds tensors of "
                         f"{len(blocks)} blocks")
    n_head = num("attention.head_count", int)
    cfg = ModelConfig(arch="llama", vocab_size=int(tensors["token_embd.weight"][1][0]),
                      n_layer=n_layer, n_head=n_head, n_kv_head=num("attention.head_count_kv", int, n_head),
                      d_model=num("embedding_length", int), ffn_dim=num("feed_forward_length", int),
                      max_seq_len=num("context_length", int, 2048),
                      norm_eps=num("attention.layer_norm_rms_epsilon", float, 1e-6),
                      rope_theta=num("rope.freq_base", float, 10000.0),
                      tie_embeddings="output.weight" not in tensors,
                      attn_bias="blk.0.attn_q.bias" in tensors)
    dims = meta.get(f"{arch}.rope.dimension_count", cfg.head_dim)
    if dims != cfg.head_dim:
        raise ValueError(f"{path}: partial rotary (rope.dimension_count {dims} != head dim {cfg.head_dim}) is not supported")
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none",):
        raise ValueError(f"{path}: rope scaling {meta[f'{arch}.rope.scaling.type']!r} is not supported")
    return cfg


def _tensor(path, cfg, tensors, hf_name, shape, permute, dequantize, act_int8):
    """-> ("param", float32 array) or ("quantized", GGMLLinear) for one model weight."""
    gg = _gguf_name(hf_name)
    if gg not in tensors:
        raise ValueError(f"{path}: missing tensor {gg!r}")
    t, tshape, raw = tensors[gg]
    if tuple(tshape) != tuple(shape):
        raise ValueError(f"{path}: tensor {gg!r} has shape {tshape}, the config implies {shape}")
    n_rope = None
    if permute and gg.endswith(("attn_q.weight", "attn_k.weight")):
        n_rope = cfg.n_head if gg.endswith("attn_q.weight") else cfg.n_kv_head
    if t in FLOAT_TYPES:
        w = raw.view("<f4" if t == "f32" else "<f2").astype(np.float32).reshape(shape)
        return "param", (_unpermute_rope(w, n_rope) if n_rope else np.ascontiguousarray(w))
    dtype, bs = GGML_BLOCKS[t]
    blocks = raw.view(dtype).reshape(shape[0], shape[1] // bs) if len(shape) == 2 else raw.view(dtype)
    if n_rope:  # the permutation moves whole rows, so it applies to blocks unchanged
        blocks = blocks[_unpermute_rope(np.arange(shape[0]), n_rope)]
    if dequantize or len(shape) == 1 or hf_name == "model.embed_tokens.weight":
        return "param", dequantize_blocks(blocks, t).reshape(shape)  # a lookup table is not a matmul
    return "quantized", GGMLLinear(t, np.ascontiguousarray(blocks), act_int8=act_int8)


def load_gguf(path, dequantize=False, act_int8=True):
    """Read a GGUF model file -> (Transformer, tokenizer or None).

    Architectures: "llama" (grouped-query attention, any RoPE base, tied or untied output) and
    "qwen2" (the same blocks with q/k/v biases; its rows are already in Hugging Face's rotary
    order, llama's are permuted back). Float tensors become float32 params; quantized matrices
    become GGMLLinear layers with fused kernels, or float32 params with dequantize=True (the token
    embedding always: a lookup table is not a matmul; a tied LM head then runs on the embedding's
    quantized blocks too, as llama.cpp's does). The tokenizer is the file's own
    (minillm.tokenizer.gguf_vocab). Errors name the file and the key or tensor at fault.
    act_int8 (default True, as llama.cpp computes these types): the quantized layers' decode-sized
    matmuls quantize x to int8 per 32 inputs and sum in integers (GGMLLinear, csrc/qgemm.c);
    False keeps x in float32, for comparisons with a float32 reference such as transformers."""
    if not isinstance(act_int8, bool):
        raise TypeError(f"act_int8: expected a bool, got {type(act_int8).__name__} {act_int8!r}")
    meta, tensors = read_gguf(path)
    cfg = _config(path, meta, tensors)
    tokenizer = _read_tokenizer(meta, path)
    permute = meta["general.architecture"] == "llama"
    params, quantized = {}, {}
    for hf_name, shape in cfg.param_shapes().items():
        kind, value = _tensor(path, cfg, tensors, hf_name, shape, permute, dequantize, act_int8)
        (params if kind == "param" else quantized)[hf_name] = value
    embd_type, embd_shape, raw = tensors["token_embd.weight"]
    if cfg.tie_embeddings and not dequantize and embd_type not in FLOAT_TYPES:
        # the tied LM head reads the embedding's blocks with a fused kernel, as llama.cpp does: a
        # quarter of float32's bytes per token at Q8_0 (the lookup keeps its float32 table)
        dtype, bs = GGML_BLOCKS[embd_type]
        quantized["model.embed_tokens.weight"] = GGMLLinear(
            embd_type, np.ascontiguousarray(raw.view(dtype).reshape(embd_shape[0], embd_shape[1] // bs)),
            act_int8=act_int8)
    return Transformer(cfg, params=params, quantized=quantized), tokenizer


gguf_name = _gguf_name
