"""minillm: every stage of a large language model system, from scratch, on a CPU.

Shape letters used in comments throughout the package:
B batch, T time (sequence), C channels (d_model), H heads, D head dim, V vocab, L layers,
S cache slots / key positions, G quant group, N rows (B*T flattened), F feed-forward width.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # lazy (PEP 562): `import minillm.io` or `minillm.tokenizer` runs this file first, and should not
    # import the model stack (nn, kernels, the C library) it does not use
    if name in ("ModelConfig", "Transformer"):
        from . import model
        return getattr(model, name)
    if name == "load":
        from .loaders import load
        return load
    raise AttributeError(f"module 'minillm' has no attribute {name!r}")


__all__ = ["ModelConfig", "Transformer", "__version__", "load"]
