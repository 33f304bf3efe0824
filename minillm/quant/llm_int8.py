"""LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
Scale", Sec. 3.2): vector-wise INT8 for both operands plus a mixed-precision decomposition that keeps
the few input feature dimensions with large-magnitude activations ("emergent outliers", |x| >= 6) in
floating point. Unlike rtn.py's INT8 (weights only, float activations), activations are quantized
too, per row, and the products summed exactly in int32 (AVX-512 VNNI in csrc/quant.c).

The paper picks outlier columns per batch at run time; here they are chosen once from calibration
activations (the columns whose max |x| reaches the threshold), which keeps the layer a fixed object.
"""
import numpy as np

from ..kernels.arith import ceil_div

from .linear import LLMInt8Linear
from .rtn import quantize_int8

THRESHOLD = 6.0  # the paper's outlier threshold on |x|


def quantize_llm_int8(w, x_calib=None, threshold=THRESHOLD, max_outlier_frac=0.1):
    """w (N, K); x_calib (n, K) calibration inputs of this layer (None: no outliers) -> LLMInt8Linear."""
    w = np.asarray(w, dtype=np.float32)
    N, K = w.shape
    outliers = np.zeros(0, dtype=np.int64)
    if x_calib is not None:
        x_calib = np.asarray(x_calib, dtype=np.float32)
        if x_calib.ndim != 2 or x_calib.shape[1] != K:
            raise ValueError(f"x_calib: expected shape (n, {K}), got {x_calib.shape}")
        peak = np.abs(x_calib).max(axis=0)                                           # (K,)
        outliers = np.flatnonzero(peak >= threshold)
        cap = int(max_outlier_frac * K)
        if len(outliers) > cap:  # keep the largest: the decomposition must stay mostly int8
            outliers = np.sort(outliers[np.argsort(-peak[outliers])[:cap]])
    keep = np.setdiff1d(np.arange(K), outliers)
    Kp = ceil_div(len(keep), 64) * 64
    wk = np.zeros((N, Kp), dtype=np.float32)
    wk[:, :len(keep)] = w[:, keep]
    q, scale = quantize_int8(wk)
    return LLMInt8Linear(outliers, w[:, outliers], q, scale, K)
