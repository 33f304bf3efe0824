/* csrc/qgemm.h -- ggml block weights times int8-quantized activations: llama.cpp's decode arithmetic.
   Reference: GGMLLinear.matmul_int8_act_reference (minillm/quant/linear.py).

   Each row of x (M, K) is quantized once per call, per block of 32 inputs: d_x = absmax / 127,
   q_x = round-to-nearest-even(x / d_x) in [-127, 127] (all 0 for an all-zero block; a NaN or inf
   input gives d_x NaN or inf and a NaN result). Every weight type is read as integer codes u with a
   float scale s and offset c per 16 weights, w = s u + c (Q4_0: s = d, c = -8 d; Q4_1: s = d, c = m;
   Q4_K: s = d sc_j, c = -dmin m_j; Q6_K: s = d sc_j, c = -32 s ...), so

       x . w  =  sum over blocks b of 32:  d_x,b  sum over halves h of 16:  s_h (u . q_x)_h + c_h (sum q_x)_h

   with (u . q_x)_h an exact integer dot (AVX-512 VNNI vpdpbusd, AVX2 maddubs + madd, or C).
   type: ggml's numbering (ggml_blocks.h): 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 8 Q8_0, 10 Q2_K, 11 Q3_K,
   12 Q4_K, 13 Q5_K, 14 Q6_K. w: the N rows of W (N, K) as ggml blocks, back to back. */
#ifndef MINILLM_QGEMM_H
#define MINILLM_QGEMM_H
#include <stdint.h>

/* 1 if qgemm reads this type, else 0 */
int32_t qgemm_supported(int32_t type);

/* out (M, N) = x (M, K) @ W^T, int8 activations. Rows of W are split between the threads in two
   static halves (one parallel region); each row is unpacked once per tile of up to 8 rows of x.
   Returns 0, -1 for an unknown type, K not whole blocks or M, N < 0, -2 when out of memory. */
int32_t qgemm(int32_t type, float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w);

/* The quantization of x qgemm runs (for tests): q (M, K) codes, d (M, K/32) scales, s (M, K/16)
   d_x times the sum of each 16 codes. Returns 0, or -1 when K is not a multiple of 32. */
int32_t qgemm_quantize_x(const float* x, int64_t M, int64_t K, int8_t* q, float* d, float* s);

/* The memory read bandwidth's probe: reads the n bytes at p (n a multiple of 64) with 64-byte vector
   loads, the threads of one parallel region each one contiguous share (threads <= 0: all of
   OpenMP's), and returns a checksum of them (so the reads cannot be dropped). */
int64_t memory_read(const uint8_t* p, int64_t n, int32_t threads);

#endif
