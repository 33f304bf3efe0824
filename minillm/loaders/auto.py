"""`minillm.load(path)`: one way to name a model, whatever holds it.

    model, tokenizer = minillm.load("SmolLM2-135M-Instruct.Q4_1.gguf")   # a GGUF file
    model, tokenizer = minillm.load("path/to/hf-folder")                  # config.json + safetensors
    model, tokenizer = minillm.load("runs/my-run")                        # a `minillm train` run folder

The kind is told from the path itself (a file starting with the GGUF magic, a folder with
config.json, a folder with a ckpt/ checkpoint folder), never from its name alone, and a path
that is none of these is a ValueError saying what was looked for.
"""
import os

from ..io.gguf import MAGIC
from ..run_folder import load_run
from .gguf import load_gguf
from .hf import load_hf, load_hf_tokenizer


def model_kind(path):
    """"gguf", "hf" or "run" for a path minillm.load reads; ValueError otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file or folder path, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                return "gguf"
        raise ValueError(f"path: {path} is a file but not a GGUF model (no 'GGUF' magic)")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            return "hf"
        if os.path.isdir(os.path.join(path, "ckpt")):
            return "run"
        raise ValueError(f"path: folder {path} has neither config.json (Hugging Face) nor ckpt/ (a minillm run)")
    raise FileNotFoundError(f"path: {path} does not exist")


def load(path, dequantize=False, act_int8=True):
    """(model, tokenizer) of a GGUF file, a Hugging Face folder or a minillm run folder. The
    tokenizer is None where the files carry none. dequantize=True (GGUF) turns quantized
    matrices into float32 parameters instead of quantized layers; act_int8 (GGUF, default True)
    quantizes the activations of their decode-sized matmuls to int8 as llama.cpp does, False keeps
    them float32 (load_gguf)."""
    kind = model_kind(path)
    if kind == "gguf":
        return load_gguf(path, dequantize=dequantize, act_int8=act_int8)
    if kind == "hf":
        return load_hf(path), load_hf_tokenizer(path)
    return load_run(path, "path")
