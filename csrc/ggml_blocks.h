/* csrc/ggml_blocks.h -- ggml's GGUF block types as fused dequantize-matmul kernels.
   Reference: minillm/quant/ggml_blocks.py (dequantize_blocks) and GGMLLinear.matmul_reference
   (minillm/quant/linear.py: x @ dequantize().T).

   type is ggml's own numbering (enum ggml_type in ggml.h): 1 F16, 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1,
   8 Q8_0, 10 Q2_K, 11 Q3_K, 12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16. w holds the N rows of W (N, K), each
   K / block blocks of that type back to back, exactly as a GGUF tensor stores them; K must be a
   multiple of the type's block (1 for F16/BF16, 32, or 256 for the K-quants). */
#ifndef MINILLM_GGML_BLOCKS_H
#define MINILLM_GGML_BLOCKS_H
#include <stdint.h>

/* decode_linear_t.fmt (decode.h) of a weight stored as ggml blocks: GGML_DECODE_FMT + type.
   type | GGML_ACT_INT8 (every type qgemm.h reads) quantizes each block of 32 inputs of x to int8 and
   sums the block dots in integers, as llama.cpp does (an extra rounding of x; opt-in).
   type | GGML_ACT_INT8 | GGML_TILES: the same products from the weight repacked as row tiles
   (qtiles.h; the int8-activation kernels only, where qtiles_usable). */
enum { GGML_DECODE_FMT = 64, GGML_ACT_INT8 = 256, GGML_TILES = 512 };

/* weights and bytes per block of type; returns 0, or -1 for a type these kernels do not read */
int32_t ggml_block_size(int32_t type, int64_t* weights, int64_t* bytes);

/* out (M, N) = x (M, K) @ W^T. Each block is decoded once per tile of up to 8 rows of x into a
   256-float buffer in L1 and multiplied with the rows of the tile (GEMV and small-M GEMM).
   Returns 0, or -1 for an unknown type or K not a multiple of its block. */
int32_t ggml_matmul(int32_t type, float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w);

/* out (n1 - n0, K) = rows n0..n1-1 of W decoded to float32 (prefill: tiles fed to a dense GEMM). */
int32_t ggml_dequant_rows(int32_t type, float* out, int64_t n0, int64_t n1, int64_t K, const uint8_t* w);

#endif
