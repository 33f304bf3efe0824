"""File containers: safetensors, GGUF (gguf.py, with ggml_types.py's tensor types), token files,
JSON lines, atomic writes. Nothing here knows what a model is: building a Transformer from these
files is minillm.loaders. All writes are atomic."""
from .atomic import atomic_write, write_bytes_atomic
from .gguf import read_gguf, write_gguf
from .safetensors import load_safetensors, save_safetensors
from .tokens import read_tokens, write_tokens

__all__ = ["atomic_write", "load_safetensors", "read_gguf", "read_tokens", "save_safetensors", "write_bytes_atomic",
           "write_gguf", "write_tokens"]
