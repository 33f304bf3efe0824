"""minillm.quant: post-training weight quantization and the fused kernels that run it.

Shape letters used throughout: B batch, T time, C channels, H heads, D head dim, V vocab, L layers,
S cache slots, G quant group; a weight W is (N, K) = (out, in) and a matmul input x is (M, K).

  formats.py      layouts: ggml blocks, nibble packing, NF4 code book
  rtn.py          round to nearest: INT8 per channel, INT4 per group (the baseline)
  gptq.py         GPTQ (Frantar et al. 2023): Hessian-aware error compensation, fast + reference
  awq.py          AWQ (Lin et al. 2024): activation-aware scales folded into the previous op
  nf4.py          NF4 + double quantization (QLoRA)
  llm_int8.py     LLM.int8() mixed decomposition
  ggml_quants.py  Q8_0 / Q4_0 / Q4_K / Q6_K, byte-exact with ggml's quantizers
  ggml_blocks.py  dequantizers of every GGUF block type minillm reads (F16, BF16, Q4_0 ... Q6_K)
  linear.py       quantized linear objects for Transformer(quantized=...), fused C kernels
  api.py          quantize(model, ...), save_quantized / load_quantized
  cli.py          `minillm quantize`
"""
from .api import FORMATS, METHODS, load_quantized, model_bytes, quantize, save_quantized

__all__ = ["quantize", "save_quantized", "load_quantized", "model_bytes", "METHODS", "FORMATS"]
