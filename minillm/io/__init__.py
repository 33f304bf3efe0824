"""Files on disk: safetensors, Hugging Face checkpoints, token files, GGUF. All writes are atomic."""
from .atomic import atomic_write
from .tokens import read_tokens, write_tokens

_LAZY = {"load_hf": "hf", "save_hf": "hf", "load_safetensors": "safetensors",
         "save_safetensors": "safetensors", "load_gguf": "gguf", "save_gguf": "gguf"}


def __getattr__(name):  # lazy, so reading token files does not import the model
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["atomic_write", "read_tokens", "write_tokens"] + list(_LAZY)
