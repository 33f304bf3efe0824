/* csrc/quant.h -- fused dequantize-matmul for quantized linear layers.
   Reference: minillm/quant/linear.py (each QuantizedLinear.matmul_reference = x @ dequantize().T).

   out (M, N) = x (M, K) @ W^T where W (N, K) is stored quantized in format fmt:
     fmt 0 INT8  w: int8 codes (N, K),                 scale (N,)       W = scale[n] * q
     fmt 1 INT4  w: packed nibbles (N, K/2),           scale, zero (N, K/G) W = scale * (q - zero)
     fmt 2 NF4   w: packed nibbles (N, K/2),           scale = absmax (N, K/64) W = absmax * NF4[q]
     fmt 3 Q8_0, fmt 4 Q4_0, fmt 5 Q4_K, fmt 6 Q6_K: w = ggml blocks (N, K/block), scale/zero unused
   Nibbles are packed in runs of 32: byte j holds weight j (low nibble) and j + 16 (high nibble).
   Weights are never expanded in memory: each block is decoded in registers (AVX2 GEMV paths, M <= 4)
   or into a block-sized stack buffer, then used against every row of x. OpenMP splits the N output rows. */
#ifndef MINILLM_QUANT_H
#define MINILLM_QUANT_H
#include <stdint.h>

/* returns 0, or -1 if fmt/group_size are invalid (the Python wrapper validates shapes first). */
int32_t quant_matmul(int32_t fmt, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                     const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size);

/* out (n1 - n0, K) = rows n0..n1-1 of W dequantized: for prefill tiles fed to a dense GEMM. */
int32_t quant_dequant_rows(int32_t fmt, float* out, int64_t n0, int64_t n1, int64_t K,
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size);

/* INT8 weights x INT8 activations with AVX-512 VNNI: x is quantized per row (absmax / 127) inside,
   products are summed exactly in int32, then scaled once: out = sx[m] * scale[n] * sum q_x q_w. */
int32_t quant_matmul_int8_vnni(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                               const int8_t* w, const float* scale);

/* INT4 weights x INT8 activations (the llama.cpp-style integer path): each group of G inputs of a row
   of x is quantized to int8 (absmax / 127) inside, and sum q_w q_x runs in integers (AVX2 maddubs);
   out = sum_g s_w[g] d_x[g] (sum q_w q_x - z[g] sum q_x). G must be a multiple of 64. */
int32_t quant_matmul_int4_q8(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                             const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size);

#endif
