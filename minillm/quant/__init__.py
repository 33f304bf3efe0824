"""minillm.quant: post-training weight quantization and the fused kernels that run it.

Shape letters used throughout: B batch, T time, C channels, H heads, D head dim, V vocab, L layers,
S cache slots, G quant group; a weight W is (N, K) = (out, in) and a matmul input x is (M, K).

  formats.py      layouts: ggml blocks, nibble packing, NF4 code book
  rtn.py          round to nearest: INT8 per channel, INT4 per group (the baseline)
  gptq.py         GPTQ (Frantar et al. 2023): Hessian-aware error compensation, fast + reference
  awq.py          AWQ (Lin et al. 2024): activation-aware scales folded into the previous op
  nf4.py          NF4 + double quantization (QLoRA)
  llm_int8.py     LLM.int8() mixed decomposition
  ggml_quants.py  Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K, byte-exact with ggml's quantizers
  ggml_fit.py     Numba versions of ggml_quants' fitting routines (same bits, much faster)
  mixes.py        llama.cpp's file types (Q4_K_M ...) as per-tensor type rules
  imatrix.py      importance matrices: collected from a model, llama.cpp's GGUF and .dat files
  ggml_blocks.py  dequantizers of every GGUF block type minillm reads (F16, BF16, Q4_0 ... Q6_K)
  linear.py       quantized linear objects for Transformer(quantized=...), fused C kernels
  api.py          quantize(model, ...); saving and loading a quantized model: minillm.loaders.quantized
"""
from .api import FORMATS, METHODS, quantize, weight_bytes

__all__ = ["quantize", "weight_bytes", "METHODS", "FORMATS"]
