"""Assembling models from files: Hugging Face folders (hf.py) and GGUF (gguf.py). A layer above
model, quant and tokenizer; the file containers themselves (safetensors, GGUF, token files) are
minillm.io, and a `minillm train` run folder is minillm.run_folder.

    from minillm.loaders import load_hf, save_hf, load_gguf, save_gguf
"""
from .gguf import load_gguf, save_gguf
from .hf import load_hf, save_hf

__all__ = ["load_gguf", "load_hf", "save_gguf", "save_hf"]
