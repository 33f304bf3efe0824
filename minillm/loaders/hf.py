"""Hugging Face checkpoints: `load_hf(dir)` and `save_hf(model, dir)` for GPT-2 and Llama folders
(config.json + model.safetensors, or a sharded model.safetensors.index.json).

minillm's parameter names are the Hugging Face names (minillm.model.NAMES), so the only work is
translating config.json and transposing GPT-2's Conv1D weights, which Hugging Face stores (in, out)
where nn.Linear (and minillm) store (out, in)."""
import json
import os

import numpy as np

from ..io.atomic import atomic_write
from ..io.safetensors import load_safetensors, save_safetensors
from ..model import NAMES, ModelConfig, Transformer

GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# config.json key -> ModelConfig field
CONFIG_KEYS = {
    "gpt2": {"vocab_size": "vocab_size", "n_layer": "n_layer", "n_head": "n_head", "n_embd": "d_model",
             "n_inner": "ffn_dim", "n_positions": "max_seq_len", "layer_norm_epsilon": "norm_eps",
             "tie_word_embeddings": "tie_embeddings"},
    "llama": {"vocab_size": "vocab_size", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
              "num_key_value_heads": "n_kv_head", "hidden_size": "d_model",
              "intermediate_size": "ffn_dim", "max_position_embeddings": "max_seq_len",
              "rms_norm_eps": "norm_eps", "rope_theta": "rope_theta", "rope_scaling": "rope_scaling",
              "tie_word_embeddings": "tie_embeddings"},
}
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}


def config_from_hf(hf):
    """A config.json dict -> ModelConfig, refusing features minillm does not implement."""
    arch = hf.get("model_type")
    if arch not in CONFIG_KEYS:
        raise ValueError(f"config.json: model_type must be one of {sorted(CONFIG_KEYS)}, got {arch!r}")
    if arch == "gpt2" and hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"config.json: activation_function {hf['activation_function']!r} is not supported "
                         "(minillm's GPT-2 uses the tanh GELU, 'gelu_new')")
    if arch == "llama":
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json: hidden_act {hf['hidden_act']!r} is not supported (expected 'silu')")
        if hf.get("attention_bias") or hf.get("mlp_bias"):
            raise ValueError("config.json: Llama attention_bias/mlp_bias are not supported")
        head_dim = hf.get("head_dim")
        if head_dim is not None and head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
            raise ValueError("config.json: head_dim * num_attention_heads must equal hidden_size")
    fields = {f: hf[k] for k, f in CONFIG_KEYS[arch].items() if hf.get(k) is not None}
    if "rope_theta" not in fields and isinstance(hf.get("rope_parameters"), dict):
        fields["rope_theta"] = hf["rope_parameters"].get("rope_theta", 10000.0)  # newer transformers
    return ModelConfig(arch=arch, **fields)


def config_to_hf(cfg):
    if cfg.qk_norm:
        raise ValueError("model: qk_norm has no Hugging Face GPT-2/Llama equivalent; cannot save_hf it")
    hf = {k: getattr(cfg, f) for k, f in CONFIG_KEYS[cfg.arch].items()}
    hf.update(model_type=cfg.arch, architectures=[ARCHITECTURES[cfg.arch]], torch_dtype="float32")
    if cfg.arch == "gpt2":
        hf.update(activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  n_ctx=cfg.max_seq_len, bos_token_id=None, eos_token_id=None)
    else:
        hf.update(hidden_act="silu", attention_bias=False, mlp_bias=False, head_dim=cfg.head_dim)
        if hf["rope_scaling"] is None:
            del hf["rope_scaling"]
    return hf


def _read_tensors(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return load_safetensors(single)
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(load_safetensors(os.path.join(folder, shard)))
        return tensors
    raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def load_hf(folder):
    """A Hugging Face GPT-2 or Llama folder -> Transformer with float32 parameters."""
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{folder}: no config.json")
    with open(cfg_path) as f:
        try:
            cfg = config_from_hf(json.load(f))
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: corrupt JSON: {e}") from None
    tensors = _read_tensors(folder)
    if cfg.arch == "gpt2" and not any(k.startswith("transformer.") for k in tensors):
        tensors = {k if k.startswith("lm_head") else "transformer." + k: v for k, v in tensors.items()}
    params = {}
    for name, shape in cfg.param_shapes().items():
        if name not in tensors:
            raise ValueError(f"{folder}: checkpoint lacks tensor {name!r}")
        a = tensors[name]
        if cfg.arch == "gpt2" and name.endswith(GPT2_CONV1D):
            a = a.T
        if a.shape != shape:
            raise ValueError(f"{folder}: tensor {name!r} has shape {a.shape}, config implies {shape}")
        params[name] = np.ascontiguousarray(a, dtype=np.float32)
    return Transformer(cfg, params=params)


def save_hf(model, folder):
    """Write config.json and model.safetensors that transformers' from_pretrained loads."""
    cfg = model.config
    hf = config_to_hf(cfg)
    tensors = {}
    for name, a in model.params.items():
        if cfg.arch == "gpt2" and name.endswith(GPT2_CONV1D):
            a = a.T
        tensors[name] = np.ascontiguousarray(a, dtype=np.float32)
    os.makedirs(folder, exist_ok=True)
    save_safetensors(os.path.join(folder, "model.safetensors"), tensors, metadata={"format": "pt"})
    with atomic_write(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
