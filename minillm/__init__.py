"""minillm: every stage of a large language model system, from scratch, on a CPU.

Shape letters used in comments throughout the package:
B batch, T time (sequence), C channels (d_model), H heads, D head dim, V vocab, L layers,
S cache slots / key positions, G quant group, N rows (B*T flattened), F feed-forward width.
"""
import os

__version__ = "0.1.0"

# numpy's OpenBLAS keeps its worker threads spinning for 2^28 cycles (~0.1 s) after every GEMM
# before they sleep. The C kernels' OpenMP threads run right after most GEMMs (attention after the
# q, k, v projections, norms and activations after the MLP GEMMs): a spinning BLAS thread takes
# half of each core from them. Measured on 2 cores: attention backward 24 ms alone, 38 ms right
# after a GEMM; with 2^12 cycles (~5 us, still long enough for back-to-back GEMMs) 24 ms in both
# cases. OpenBLAS reads this when it loads, so it applies when minillm is imported before numpy
# (the `minillm` command, and examples that set it themselves); a user's own setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")


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
