/* csrc/qtiles.h -- ggml block weights laid out as row tiles, times int8 activations.
   Reference: GGMLLinear.matmul_int8_act_reference (minillm/quant/linear.py), as qgemm.h.

   ggml's blocks keep each row's inputs together, so a SIMD dot of one block gives partial sums of one
   row that must each be converted and scaled. Repacked once, at load, into groups of 16 rows, 64
   bytes hold 4 inputs of all 16 rows, and a VPDPBUSD against 4 codes of x adds to 16 rows' integer
   sums at once (AVX2: VPMADDUBSW and VPMADDWD on each half of 8 rows) (the layout of the B operand of Intel's AMX and of llama.cpp's repacked types). Per
   group, per unit of 32 inputs, the codes of the 16 rows (512 bytes: byte 64 (k / 4) + 4 n + k % 4
   is row n's input k; the 4-bit types keep two codes per byte, tile byte i in the low nibble of byte
   i and tile byte 256 + i in the high one), then the scales:
       Q8_0: d (16 fp16), the codes stored plus 128     544 bytes per group and block, as 16 x 34
       Q4_0: d (16 fp16)                                288 = 16 x 18
       Q4_1: d, m (16 fp16 each)                        320 = 16 x 20
       Q4_K: per super-block of 256 inputs a header first, d (16 fp16), dmin (16 fp16) and the 12
             scale bytes of the 16 rows (byte i of row n at 64 + 16 i + n), then its 8 units'
             codes: 2304 = 16 x 144
       Q6_K: per super-block d (16 fp16) and the 16 int8 scales of the 16 rows (scale s of row n at
             32 + 16 s + n), then per unit the low 4 bits of its codes as above (256 bytes) and their
             top 2 bits (128 bytes: bits 2s, 2s + 1 of byte i for tile byte i + 128 s): 3360 = 16 x 210
   The layout holds the same bytes per weight as the blocks (rows past N are zeros). Every output is

       out[m, n] = sum over units u:  fma(float(i_n,u), s_n,u d_x,m,u, acc)
                 + sum over units u:  fma(c_n,u, xs_m,u, off)      (Q4_1: c = m; Q4_K: c = -dmin m_j)
   with i_n,u the exact integer dot of the unit (Q8_0 and Q4_0: of the signed codes, their offset
   taken off in integers; Q6_K: each half of 16 its dot of signed codes times its int8 scale, s = d), in this order for every M and every range of rows (xs_m,u = d_x (sum
   q_x) of the unit), so a row's result does not depend on the rows beside it, of W or of x. x is
   quantized as qgemm's. */
#ifndef MINILLM_QTILES_H
#define MINILLM_QTILES_H
#include <stdint.h>

/* groups of 16 rows a one-row call streams side by side (decode.c's tasks at M = 1 take one group of
   each of QTILES_RUNS parts of W) */
enum { QTILES_RUNS = 6 };

/* 1 when the kernels run row tiles of type (Q4_0 2, Q4_1 3, Q8_0 8, Q4_K 12, Q6_K 14) here: the AVX-512
   VNNI and AVX2 variants, and MINILLM_TILES not "0" (then the products read the blocks, qgemm.c); else 0 */
int32_t qtiles_usable(int32_t type);

/* bytes of the tile layout of a weight (N, K) of type, or -1 (a type without one, N < 0, or K not
   whole blocks) */
int64_t qtiles_bytes(int32_t type, int64_t N, int64_t K);

/* Repack the N rows of ggml blocks w (N, K) into out (qtiles_bytes of them). Returns 0, or -1 as
   qtiles_bytes. */
int32_t qtiles_pack(int32_t type, const uint8_t* w, int64_t N, int64_t K, uint8_t* out);

/* The products: qgemm.h's qgemm with type | GGML_TILES (ggml_blocks.h) and w the tile layout. */

#endif
