"""A quantized minillm model in one safetensors file: `save_quantized(model, path)` stores the float
params under their names, each quantized layer's arrays under "<name>::<field>", and the config and
per-layer formats as JSON metadata; `load_quantized(path)` rebuilds the Transformer with the same
quantized layers (minillm.quant.linear.from_arrays)."""
import json

import numpy as np

from ..io.safetensors import load_safetensors, read_safetensors_header, save_safetensors
from ..model import ModelConfig, Transformer
from ..quant.linear import from_arrays

META_KEY = "minillm_quant"


def save_quantized(model, path):
    """One safetensors file: float params under their names, each quantized layer's arrays under
    "<name>::<field>", and the config + per-layer formats as JSON metadata."""
    if not isinstance(model, Transformer):
        raise TypeError(f"model: expected a minillm Transformer, got {type(model).__name__}")
    tensors = dict(model.params)
    layers = {}
    for name, q in model.quantized.items():
        if not hasattr(q, "arrays"):
            raise TypeError(f"model.quantized[{name!r}]: {type(q).__name__} cannot be saved")
        layers[name] = q.meta()
        tensors.update({f"{name}::{k}": np.ascontiguousarray(a) for k, a in q.arrays().items()})
    meta = {"config": model.config.to_dict(), "layers": layers}
    save_safetensors(path, tensors, metadata={META_KEY: json.dumps(meta)})


def load_quantized(path):
    """Inverse of save_quantized -> Transformer. Raises ValueError on files it did not write."""
    md = read_safetensors_header(path)[1] or {}
    if META_KEY not in md:
        raise ValueError(f"{path}: not a minillm quantized checkpoint (no {META_KEY!r} metadata)")
    try:
        meta = json.loads(md[META_KEY])
        cfg = ModelConfig(**meta["config"])
        layers = meta["layers"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: damaged {META_KEY!r} metadata ({e})") from None
    tensors = load_safetensors(path)
    quantized = {}
    for name, lm in layers.items():
        prefix = name + "::"
        arrays = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        quantized[name] = from_arrays(lm, arrays)
    order = [k for k in cfg.param_shapes() if k in tensors]
    return Transformer(cfg, params={k: tensors[k] for k in order}, quantized=quantized)
