"""Assembling models from files: Hugging Face folders (hf.py), GGUF (gguf.py) and minillm's quantized
checkpoints (quantized.py). A layer above model, quant and tokenizer; the file containers themselves
(safetensors, GGUF, token files) are minillm.io, and a `minillm train` run folder is minillm.run_folder.

    from minillm.loaders import load_hf, save_hf, load_gguf, save_gguf, load_quantized, save_quantized
    model, tokenizer = minillm.loaders.load(path)      # any of them (also minillm.load)
"""
from .auto import load
from .gguf import load_gguf, save_gguf
from .hf import load_hf, load_hf_tokenizer, save_hf
from .quantized import load_quantized, save_quantized

__all__ = ["load", "load_gguf", "load_hf", "load_hf_tokenizer", "load_quantized", "save_gguf", "save_hf",
           "save_quantized"]
