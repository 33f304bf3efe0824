"""llama.cpp's file types ("mixes") as per-tensor type choices: a Q4_K_M file is not Q4_K everywhere.
llama.cpp's quantizer (src/llama-quant.cpp, llama_tensor_get_type) starts every 2-D weight at the
mix's default type, then gives more bits where quantization error hurts most, and falls back to a
32-block type where a row cannot be cut into 256-weight K-blocks. This module makes the same
choices for the llama and qwen2 architectures, so a file minillm writes has llama.cpp's tensor types.

  the output matrix (or the token embedding when it doubles as the output): Q6_K (Q8_0 when the
      mix is Q8_0 or the row does not fit the mix's blocks)
  attn_v: Q2_K -> Q4_K if n_head / n_head_kv >= 4 else Q3_K; Q3_K_M -> Q5_K in the first two layers,
      else Q4_K; Q3_K_L -> Q5_K; Q4_K_M / Q5_K_M -> Q6_K on the "more bits" layers; Q4_K_S -> Q5_K
      in the first four layers; a 70B llama (80 layers, grouped queries) lifts Q3_K / Q4_K to Q5_K
  ffn_down: Q2_K -> Q3_K; Q3_K_M -> Q5_K in the first n/16 layers, else Q4_K; Q3_K_L -> Q5_K;
      Q4_K_M / Q5_K_M -> Q6_K on the "more bits" layers; Q4_K_S -> Q5_K in the first n/8 layers;
      Q4_0 / Q5_0 with an importance matrix -> Q4_1 / Q5_1 in the first n/8 layers
  attn_output: Q2_K -> Q3_K, Q3_K_M -> Q4_K, Q3_K_L -> Q5_K
  "more bits" layers: the first n/8, the last n/8, and every third layer between them.
  fallback when the row length (the input dimension) is not a multiple of the type's block:
      Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; still unfit -> F16.
1-D tensors (norms, biases) keep their type; so does every tensor not named *.weight or named *_norm.weight.
"""
import re

# mix name -> (llama_ftype id written as general.file_type, default ggml type)
MIXES = {"Q4_0": (2, "q4_0"), "Q4_1": (3, "q4_1"), "Q8_0": (7, "q8_0"), "Q5_0": (8, "q5_0"), "Q5_1": (9, "q5_1"),
         "Q2_K": (10, "q2_K"), "Q3_K_S": (11, "q3_K"), "Q3_K_M": (12, "q3_K"), "Q3_K_L": (13, "q3_K"),
         "Q4_K_S": (14, "q4_K"), "Q4_K_M": (15, "q4_K"), "Q5_K_S": (16, "q5_K"), "Q5_K_M": (17, "q5_K"),
         "Q6_K": (18, "q6_K")}
FALLBACK = {"q2_K": "q4_0", "q3_K": "q4_0", "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0"}
BLOCK = {"q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "q2_K": 256, "q3_K": 256, "q4_K": 256,
         "q5_K": 256, "q6_K": 256}
ARCHITECTURES = ("llama", "qwen2")
_LAYER = re.compile(r"blk\.(\d+)\.")


def tensor_order(name):
    """llama.cpp's order of a model's tensors (its loader sorts by layer, then by name); the layer
    counters of the rules below count in this order."""
    m = _LAYER.match(name)
    return (int(m.group(1)) if m else -1, name)


def _more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _quantizable(name, shape):
    return len(shape) >= 2 and name.endswith("weight") and "_norm.weight" not in name


def _category(name):
    for key, cat in (("attn_v.weight", "attn_v"), ("attn_qkv.weight", "attn_v"), ("attn_output.weight", "attn_output"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _output_type(mix, default, ncols):
    if ncols % BLOCK[default]:
        return "q8_0"
    return default if default == "q8_0" else "q6_K"


def _rule(mix, t, cat, i, n, n_gqa, has_imatrix, is_70b):  # the mix's choice for one block tensor
    if cat == "attn_v":
        t = {"Q2_K": "q4_K" if n_gqa >= 4 else "q3_K", "Q3_K_M": "q5_K" if i < 2 else "q4_K",
             "Q3_K_L": "q5_K"}.get(mix, t)
        if mix in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
            t = "q6_K"
        elif mix == "Q4_K_S" and i < 4:
            t = "q5_K"
        return "q5_K" if is_70b and t in ("q3_K", "q4_K") else t
    if cat == "ffn_down":
        if mix == "Q2_K":
            return "q3_K"
        if mix == "Q3_K_M":
            return "q5_K" if i < n // 16 else "q4_K"
        if mix == "Q3_K_L":
            return "q5_K"
        if mix in ("Q4_K_M", "Q5_K_M"):
            return "q6_K" if _more_bits(i, n) else t
        if mix == "Q4_K_S" and i < n // 8:
            return "q5_K"
        if mix in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
            return "q4_1" if mix == "Q4_0" else "q5_1"
        return t
    if cat == "attn_output":
        return {"Q2_K": "q3_K", "Q3_K_M": "q4_K", "Q3_K_L": "q5_K"}.get(mix, t)
    return t


def mix_types(tensors, mix, arch, n_head, n_head_kv, n_layer, has_imatrix=False):
    """{name: (type, shape)} -> {name: ggml type to store} for llama.cpp file type `mix`. Shapes are
    (outer..inner): the last axis is the row that the blocks cut. Tensors that are not quantized
    keep the type given."""
    if mix not in MIXES:
        raise ValueError(f"mix: expected one of {', '.join(MIXES)}, got {mix!r}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: llama.cpp's mix rules are implemented for {ARCHITECTURES}, got {arch!r}")
    default = MIXES[mix][1]
    n_gqa = n_head // max(1, n_head_kv)
    is_70b = arch == "llama" and n_layer == 80 and n_head != n_head_kv
    tied = "output.weight" not in tensors
    counters = {"attn_v": 0, "ffn_down": 0}
    n_attn_v = sum(_category(name) == "attn_v" for name in tensors)
    out = {}
    for name in sorted(tensors, key=tensor_order):
        cur, shape = tensors[name]
        if not _quantizable(name, shape):
            out[name] = cur
            continue
        cat, ncols = _category(name), shape[-1]
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            t = _output_type(mix, default, ncols)
        elif name == "token_embd.weight":
            t = default
        else:
            i = counters.get(cat, 0)
            n = n_attn_v if cat == "attn_v" else n_layer
            t = _rule(mix, default, cat, i, n, n_gqa, has_imatrix, is_70b)
            if cat in counters:
                counters[cat] += 1
        if ncols % BLOCK[t]:
            if t not in FALLBACK:
                raise ValueError(f"tensors: {name!r} has rows of {ncols}, which {t} blocks of {BLOCK[t]} do not "
                                 f"divide, and llama.cpp defines no fallback for {t}")
            t = FALLBACK[t] if ncols % BLOCK[FALLBACK[t]] == 0 else "f16"
        out[name] = t
    return out
