"""Hugging Face checkpoints: `load_hf(dir)` and `save_hf(model, dir, tokenizer)` for GPT2LMHeadModel,
LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM folders (config.json + model.safetensors,
or shards listed in model.safetensors.index.json; F32, F16 or BF16 weights, read as float32).

minillm's parameter names are the Hugging Face names (minillm.model.NAMES), so the only work is
translating config.json and transposing GPT-2's Conv1D weights, which Hugging Face stores (in, out)
where nn.Linear (and minillm) store (out, in). Mistral and Qwen2 are Llama blocks: Qwen2 adds biases
to the q/k/v projections (ModelConfig.attn_bias); Mistral's sliding window caps max_seq_len, since
within the window its attention is the full causal attention minillm computes."""
import json
import os

import numpy as np

from ..io.atomic import atomic_write
from ..io.jsonl import read_json
from ..io.safetensors import load_safetensors, save_safetensors
from ..model import NAMES, ModelConfig, Transformer
from ..tokenizer import BPETokenizer, bpe_io
from ..tokenizer.hf_tokenizer import save_tokenizer_files, tokenizer_from_hf
from ..tokenizer.pretrained import PretrainedTokenizer

GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_LLAMA_KEYS = {"vocab_size": "vocab_size", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
               "num_key_value_heads": "n_kv_head", "hidden_size": "d_model",
               "intermediate_size": "ffn_dim", "max_position_embeddings": "max_seq_len",
               "rms_norm_eps": "norm_eps", "rope_theta": "rope_theta", "rope_scaling": "rope_scaling",
               "tie_word_embeddings": "tie_embeddings"}
# config.json model_type -> (minillm flavour, config key -> ModelConfig field)
CONFIG_KEYS = {
    "gpt2": ("gpt2", {"vocab_size": "vocab_size", "n_layer": "n_layer", "n_head": "n_head", "n_embd": "d_model",
                      "n_inner": "ffn_dim", "n_positions": "max_seq_len", "layer_norm_epsilon": "norm_eps",
                      "tie_word_embeddings": "tie_embeddings"}),
    "llama": ("llama", _LLAMA_KEYS),
    "mistral": ("llama", _LLAMA_KEYS),
    "qwen2": ("llama", _LLAMA_KEYS),
}
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM"}


def _check_llama_family(hf, model_type):
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {hf['hidden_act']!r} is not supported (expected 'silu')")
    if model_type != "qwen2" and (hf.get("attention_bias") or hf.get("mlp_bias")):
        raise ValueError(f"config.json: {model_type} attention_bias/mlp_bias are not supported")
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
        raise ValueError("config.json: head_dim * num_attention_heads must equal hidden_size")


def config_from_hf(hf):
    """A config.json dict -> ModelConfig, refusing features minillm does not implement."""
    model_type = hf.get("model_type")
    if model_type not in CONFIG_KEYS:
        raise ValueError(f"config.json: model_type must be one of {sorted(CONFIG_KEYS)}, got {model_type!r}")
    arch, keys = CONFIG_KEYS[model_type]
    if arch == "gpt2" and hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"config.json: activation_function {hf['activation_function']!r} is not supported "
                         "(minillm's GPT-2 uses the tanh GELU, 'gelu_new')")
    if arch == "llama":
        _check_llama_family(hf, model_type)
    fields = {f: hf[k] for k, f in keys.items() if hf.get(k) is not None}
    if "rope_theta" not in fields and isinstance(hf.get("rope_parameters"), dict):
        fields["rope_theta"] = hf["rope_parameters"].get("rope_theta", 10000.0)  # newer transformers
        if hf["rope_parameters"].get("rope_type", "default") != "default" and "rope_scaling" not in fields:
            fields["rope_scaling"] = dict(hf["rope_parameters"])
    window = hf.get("sliding_window") if hf.get("use_sliding_window", model_type == "mistral") else None
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise ValueError(f"config.json: sliding_window: expected an int, got {window!r}")
    if window:
        fields["max_seq_len"] = min(int(window), int(fields.get("max_seq_len", window)))
    if model_type == "qwen2":
        fields["attn_bias"] = True
    fields.setdefault("tie_embeddings", arch == "gpt2")  # transformers' default per family
    return ModelConfig(arch=arch, **fields)


def config_to_hf(cfg, tokenizer=None):
    """config.json of a ModelConfig: GPT2LMHeadModel, LlamaForCausalLM, or Qwen2ForCausalLM when the
    q/k/v projections have biases."""
    if cfg.qk_norm:
        raise ValueError("model: qk_norm has no Hugging Face GPT-2/Llama equivalent; cannot save_hf it")
    model_type = "qwen2" if cfg.attn_bias else cfg.arch
    hf = {k: getattr(cfg, f) for k, f in CONFIG_KEYS[model_type][1].items()}
    hf.update(model_type=model_type, architectures=[ARCHITECTURES[model_type]], torch_dtype="float32")
    bos, eos = _special_ids(tokenizer)
    if cfg.arch == "gpt2":
        hf.update(activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  n_ctx=cfg.max_seq_len, bos_token_id=bos, eos_token_id=eos)
    else:
        hf.update(hidden_act="silu", head_dim=cfg.head_dim, bos_token_id=bos, eos_token_id=eos)
        if model_type == "llama":
            hf.update(attention_bias=False, mlp_bias=False)
        else:
            hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layer)
        if hf["rope_scaling"] is None:
            del hf["rope_scaling"]
    return hf


def _special_ids(tokenizer):
    """(bos id, eos id) a tokenizer names, each None if it names none."""
    if isinstance(tokenizer, PretrainedTokenizer):
        return tokenizer.bos_token_id, tokenizer.eos_token_id
    special = getattr(tokenizer, "special_tokens", None) or {}
    eos = special.get("<|endoftext|>", special.get("</s>"))
    return special.get("<s>", eos), eos


def _read_tensors(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return load_safetensors(single)
    if os.path.exists(index):
        weight_map = read_json(index, dict).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) and os.path.basename(v) == v
                                                       for v in weight_map.values()):
            raise ValueError(f"{index}: expected 'weight_map' to map tensor names to file names in {folder}")
        shards = sorted(set(weight_map.values()))
        tensors = {}
        for shard in shards:
            tensors.update(load_safetensors(os.path.join(folder, shard)))
        return tensors
    raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def _read_config(folder):
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{folder}: no config.json")
    return config_from_hf(read_json(cfg_path, dict))


def load_hf(folder):
    """A Hugging Face GPT-2 / Llama / Mistral / Qwen2 folder -> Transformer with float32 parameters."""
    cfg = _read_config(folder)
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


def load_hf_tokenizer(folder):
    """The folder's tokenizer (tokenizer.json + tokenizer_config.json) as a PretrainedTokenizer, or
    None when the folder has no tokenizer.json."""
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        return None
    return tokenizer_from_hf(folder)


def _write_json(path, obj):
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)


def save_hf(model, folder, tokenizer=None):
    """Write a folder transformers' from_pretrained loads whole: config.json, model.safetensors,
    generation_config.json and, with a tokenizer, tokenizer.json + tokenizer_config.json (carrying
    the chat template of a PretrainedTokenizer)."""
    cfg = model.config
    if model.quantized:
        raise ValueError("model: save_hf writes float32 weights; pass a model without quantized layers")
    hf = config_to_hf(cfg, tokenizer)
    tensors = {}
    for name, a in model.params.items():
        if cfg.arch == "gpt2" and name.endswith(GPT2_CONV1D):
            a = a.T
        tensors[name] = np.ascontiguousarray(a, dtype=np.float32)
    os.makedirs(folder, exist_ok=True)
    save_safetensors(os.path.join(folder, "model.safetensors"), tensors, metadata={"format": "pt"})
    _write_json(os.path.join(folder, "config.json"), hf)
    generation = {"bos_token_id": hf["bos_token_id"], "eos_token_id": hf["eos_token_id"]}
    if isinstance(tokenizer, PretrainedTokenizer) and len(tokenizer.stop_token_ids) > 1:
        generation["eos_token_id"] = sorted(tokenizer.stop_token_ids)
    _write_json(os.path.join(folder, "generation_config.json"), generation)
    if isinstance(tokenizer, PretrainedTokenizer):
        save_tokenizer_files(tokenizer, folder)
    elif isinstance(tokenizer, BPETokenizer):
        bpe_io.save_hf(tokenizer, os.path.join(folder, "tokenizer.json"))
        bos, eos = _special_ids(tokenizer)
        _write_json(os.path.join(folder, "tokenizer_config.json"), {
            "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
            "bos_token": tokenizer.inverse_special[bos].decode() if bos is not None else None,
            "eos_token": tokenizer.inverse_special[eos].decode() if eos is not None else None})
    elif tokenizer is not None:
        raise TypeError(f"tokenizer: expected a PretrainedTokenizer or BPETokenizer, got {type(tokenizer).__name__}")
