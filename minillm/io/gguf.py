"""GGUF, llama.cpp's model file (ggml docs/gguf.md, version 3): `save_gguf(model, path, dtype)` writes
a minillm Llama as a file llama.cpp loads, `load_gguf(path)` reads F32/F16/Q8_0/Q4_0/Q4_K/Q6_K files
back into minillm (quantized tensors stay quantized: minillm.quant.linear.GGMLLinear).

Layout, all little-endian: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata as
(string key, u32 type, value); tensor infos as (string name, u32 n_dims, u64 dims[] innermost first,
u32 ggml type, u64 offset into the data section); padding to `general.alignment` (32); the data.
Strings are u64 length + UTF-8 bytes. Every count, size and offset is checked against the file size
before anything is allocated, so a truncated or corrupted file raises ValueError.

Two conventions differ from Hugging Face's, as llama.cpp's convert_hf_to_gguf.py handles them:
tensor names (NAMES below), and the rows of the q/k projections: HF's rotary embedding rotates the
two halves of each head (rotate_half) where ggml rotates adjacent pairs, so rows are permuted per
head from [first half, second half] to interleaved pairs (_permute_rope; _unpermute_rope on load).
The tokenizer, when given, is stored as a byte-level BPE ("gpt2" model: GPT-2's byte-to-unicode
token strings plus the merge list).
"""
import mmap
import os
import struct

import numpy as np

from ..model import ModelConfig, Transformer
from .atomic import atomic_write

MAGIC = b"GGUF"
VERSION = 3
ALIGNMENT = 32
# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types minillm reads and writes
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K = 0, 1, 2, 8, 12, 14
TYPE_NAMES = {GGML_F32: "f32", GGML_F16: "f16", GGML_Q4_0: "q4_0", GGML_Q8_0: "q8_0", GGML_Q4_K: "q4_K",
              GGML_Q6_K: "q6_K"}
TYPE_IDS = {v: k for k, v in TYPE_NAMES.items()}
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_K": 14}   # llama_ftype (Q4_K: MOSTLY_Q4_K_S)
DTYPES = tuple(FILE_TYPE)
# Hugging Face Llama name -> GGUF name ("{i}" = layer)
NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight",
         "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
         "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
         "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
         "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
         "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
         "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
         "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
         "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
         "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight"}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5


# ------------------------------------------------------------------ rotary layout
def _permute_rope(w, n_head):  # (n_head * D, C): HF rotate-half rows -> ggml interleaved pairs
    D = w.shape[0] // n_head
    return w.reshape(n_head, 2, D // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute_rope(w, n_head):  # inverse of _permute_rope
    D = w.shape[0] // n_head
    return w.reshape(n_head, D // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ------------------------------------------------------------------ GPT-2 byte <-> unicode table
def _bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (encoder.py, bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_B2U = _bytes_to_unicode()
_U2B = {c: b for b, c in _B2U.items()}


def _tok_str(b):
    return "".join(_B2U[x] for x in b)


# ------------------------------------------------------------------ writing
def _s(text):
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv(key, vtype, value):
    out = _s(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return out + _s(value)
    if vtype == ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == STRING:
            return out + b"".join(_s(v) for v in items)
        return out + np.asarray(items, dtype=np.dtype(_SCALAR[etype])).tobytes()
    return out + struct.pack(_SCALAR[vtype], value)


def _tokenizer_kvs(tok, vocab_size):
    """GGUF tokenizer metadata for a minillm byte-level BPE (or ByteTokenizer): model "gpt2"."""
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
            tokens.append(_tok_str(vocab[i]))
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
           ("tokenizer.ggml.merges", ARRAY, (STRING, [f"{_tok_str(vocab[a])} {_tok_str(vocab[b])}" for a, b in merges])),
           ("minillm.tokenizer.pattern", STRING, pattern)]
    for key, names in (("bos", ("<|begin_of_text|>", "<s>", "<|endoftext|>")),
                       ("eos", ("<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>"))):
        ids = [special[n] for n in names if n in special]
        if ids:
            kvs.append((f"tokenizer.ggml.{key}_token_id", U32, ids[0]))
    return kvs


def _tensor_payload(name, w, dtype):
    """(ggml type, bytes) of one tensor: 1-D tensors stay F32 (as llama.cpp's converter keeps norms);
    a row length the block format cannot split falls back like llama.cpp (q4_K -> q4_0 -> f16)."""
    from ..quant.ggml_quants import quantize_blocks
    if w.ndim == 1 or dtype == "f32":
        return GGML_F32, np.ascontiguousarray(w, dtype="<f4").tobytes()
    if dtype == "q4_0" or dtype == "q4_K":
        if name == "output.weight" and w.shape[1] % 256 == 0:
            dtype = "q6_K"  # llama.cpp keeps the output matrix at 6 bits in its 4-bit files
    chain = {"q4_K": ["q4_K", "q4_0", "f16"], "q6_K": ["q6_K", "q8_0", "f16"], "q4_0": ["q4_0", "f16"],
             "q8_0": ["q8_0", "f16"], "f16": ["f16"]}[dtype]
    for t in chain:
        if t == "f16":
            return GGML_F16, np.ascontiguousarray(w, dtype="<f2").tobytes()
        if w.shape[1] % (256 if t.endswith("K") else 32) == 0:
            return TYPE_IDS[t], quantize_blocks(w, t).tobytes()


def save_gguf(model, path, dtype="f32", tokenizer=None):
    """Write a minillm Llama model as GGUF with 2-D weights in `dtype` ("f32" | "f16" | "q8_0" |
    "q4_0" | "q4_K"); tokenizer (minillm BPE or ByteTokenizer) adds the vocabulary metadata."""
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
    infos, blobs, offset = [], [], 0
    for hf_name, w in model.params.items():
        gg = _gguf_name(hf_name)
        if gg.endswith("attn_q.weight"):
            w = _permute_rope(w, cfg.n_head)
        elif gg.endswith("attn_k.weight"):
            w = _permute_rope(w, cfg.n_kv_head)
        gtype, blob = _tensor_payload(gg, w, dtype)
        dims = list(reversed(w.shape))                                                # innermost first
        infos.append(_s(gg) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", gtype, offset))
        pad = -len(blob) % ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    head = MAGIC + struct.pack("<IQQ", VERSION, len(infos), len(kvs)) + b"".join(_kv(*kv) for kv in kvs)
    head += b"".join(infos)
    head += b"\0" * (-len(head) % ALIGNMENT)
    with atomic_write(path) as f:
        f.write(head)
        for blob in blobs:
            f.write(blob)


def _gguf_name(hf_name):
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


# ------------------------------------------------------------------ reading
class _Reader:
    """Bounds-checked little-endian cursor over the file's bytes."""

    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"{self.path}: truncated or corrupted GGUF (need {n} bytes at offset {self.pos}, "
                             f"file has {len(self.buf)})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: corrupted GGUF (a string is not UTF-8)") from None

    def value(self, vtype, depth=0):
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY and depth == 0:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                return np.frombuffer(self.take(n * size), dtype=np.dtype(_SCALAR[etype])).tolist()
            if n > len(self.buf) - self.pos:  # each element takes at least one byte
                raise ValueError(f"{self.path}: corrupted GGUF (array of {n} elements)")
            return [self.value(etype, depth + 1) for _ in range(n)]
        raise ValueError(f"{self.path}: corrupted GGUF (unknown metadata value type {vtype})")


def read_gguf(path):
    """-> (metadata {key: value}, tensors {name: (ggml type, shape (outer..inner), raw uint8 array)})."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise ValueError(f"{path}: not a GGUF file ({size} bytes)")
        buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    r = _Reader(buf, path)
    if bytes(r.take(4)) != MAGIC:
        raise ValueError(f"{path}: not a GGUF file (bad magic)")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    if n_tensors > size or n_kv > size:
        raise ValueError(f"{path}: corrupted GGUF header ({n_tensors} tensors, {n_kv} metadata entries)")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.unpack("<I")
        if nd > 4:
            raise ValueError(f"{path}: corrupted GGUF (tensor {name!r} has {nd} dimensions)")
        dims = [r.unpack("<Q") for _ in range(nd)]
        infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
    align = int(meta.get("general.alignment", ALIGNMENT))
    if align <= 0 or align & (align - 1):
        raise ValueError(f"{path}: corrupted GGUF (alignment {align})")
    start = r.pos + (-r.pos % align)
    from ..quant.formats import GGML_BLOCKS
    tensors = {}
    for name, dims, gtype, off in infos:
        if gtype not in TYPE_NAMES:
            raise ValueError(f"{path}: tensor {name!r} has ggml type {gtype}, which minillm does not read "
                             f"(supported: {sorted(TYPE_NAMES.values())})")
        t = TYPE_NAMES[gtype]
        n = int(np.prod(dims)) if dims else 1
        if t in ("f32", "f16"):
            nbytes = n * (4 if t == "f32" else 2)
        else:
            dtype, bs = GGML_BLOCKS[t]
            if dims[0] % bs:
                raise ValueError(f"{path}: tensor {name!r} row length {dims[0]} is not a multiple of {bs}")
            nbytes = n // bs * dtype.itemsize
        if off % align or start + off + nbytes > size:
            raise ValueError(f"{path}: truncated or corrupted GGUF (tensor {name!r} at {start + off}+{nbytes}, "
                             f"file has {size} bytes)")
        raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=start + off)
        tensors[name] = (t, tuple(reversed(dims)), raw)
    return meta, tensors


def _read_tokenizer(meta):
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        return None  # no vocabulary, or a kind minillm does not rebuild (e.g. "llama" SentencePiece)
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type", [])
    merges = meta.get("tokenizer.ggml.merges", [])
    vocab, special = {}, {}
    for i, s in enumerate(tokens):
        ty = types[i] if i < len(types) else TOKEN_NORMAL
        if ty == TOKEN_CONTROL:
            special[s] = i
        elif ty != TOKEN_UNUSED:
            try:
                vocab[i] = bytes(_U2B[c] for c in s)
            except KeyError:
                raise ValueError(f"tokenizer.ggml.tokens[{i}]: {s!r} is not a byte-level BPE token") from None
    if not merges and all(vocab.get(i) == bytes([i]) for i in range(256)) and len(vocab) == 256 and not special:
        from ..tokenizer.byte import ByteTokenizer
        return ByteTokenizer()
    from ..tokenizer import BPETokenizer
    from ..tokenizer import patterns
    ids = {b: i for i, b in vocab.items()}
    table = {}
    for rank, m in enumerate(merges):
        a, b = m.split(" ")
        ba, bb = bytes(_U2B[c] for c in a), bytes(_U2B[c] for c in b)
        table[(ids[ba], ids[bb])] = (rank, ids[ba + bb])
    byte_ids = [ids[bytes([b])] for b in range(256)]
    pattern = meta.get("minillm.tokenizer.pattern") or patterns.CL100K
    return BPETokenizer(table, vocab, pattern=pattern, special_tokens=special, byte_ids=byte_ids)


def load_gguf(path):
    """Read a llama-architecture GGUF -> (Transformer, tokenizer or None). F32/F16 tensors become
    float32 params; Q8_0/Q4_0/Q4_K/Q6_K matrices become quantized linears (the token embedding is
    dequantized, since a lookup table is not a matmul)."""
    from ..quant.ggml_quants import dequantize_blocks
    from ..quant.formats import GGML_BLOCKS
    from ..quant.linear import GGMLLinear
    meta, tensors = read_gguf(path)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not supported (only 'llama')")
    try:
        d_model = int(meta["llama.embedding_length"])
        n_head = int(meta["llama.attention.head_count"])
        emb = tensors["token_embd.weight"]
        cfg = ModelConfig(arch="llama", vocab_size=int(emb[1][0]), n_layer=int(meta["llama.block_count"]),
                          n_head=n_head, n_kv_head=int(meta.get("llama.attention.head_count_kv", n_head)),
                          d_model=d_model, ffn_dim=int(meta["llama.feed_forward_length"]),
                          max_seq_len=int(meta.get("llama.context_length", 2048)),
                          norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-6)),
                          rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
                          tie_embeddings="output.weight" not in tensors)
    except KeyError as e:
        raise ValueError(f"{path}: missing GGUF metadata or tensor {e}") from None
    dims = meta.get("llama.rope.dimension_count", cfg.head_dim)
    if dims != cfg.head_dim:
        raise ValueError(f"{path}: partial rotary (rope.dimension_count {dims} != head dim {cfg.head_dim}) is not supported")
    params, quantized = {}, {}
    expected = cfg.param_shapes()
    for hf_name, shape in expected.items():
        gg = _gguf_name(hf_name)
        if gg not in tensors:
            raise ValueError(f"{path}: missing tensor {gg!r}")
        t, tshape, raw = tensors[gg]
        if tuple(tshape) != tuple(shape):
            raise ValueError(f"{path}: tensor {gg!r} has shape {tshape}, the config implies {shape}")
        n_rope = cfg.n_head if gg.endswith("attn_q.weight") else cfg.n_kv_head if gg.endswith("attn_k.weight") else None
        if t in ("f32", "f16"):
            w = raw.view("<f4" if t == "f32" else "<f2").astype(np.float32).reshape(shape)
            params[hf_name] = _unpermute_rope(w, n_rope) if n_rope else np.ascontiguousarray(w)
            continue
        dtype, bs = GGML_BLOCKS[t]
        blocks = raw.view(dtype).reshape(shape[0], shape[1] // bs)
        if n_rope:  # the permutation moves whole rows, so it applies to blocks unchanged
            idx = _unpermute_rope(np.arange(shape[0]), n_rope)
            blocks = blocks[idx]
        if hf_name == "model.embed_tokens.weight":
            params[hf_name] = dequantize_blocks(blocks, t)
        else:
            quantized[hf_name] = GGMLLinear(t, np.ascontiguousarray(blocks))
    return Transformer(cfg, params=params, quantized=quantized), _read_tokenizer(meta)
