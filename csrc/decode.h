/* csrc/decode.h -- one decode step (batch 1, one new token) through every block of a Transformer
 * in one OpenMP parallel region. Reference: Transformer._block_forward with a KV cache
 * (minillm/model.py), which runs the same kernels one Python call at a time. */
#ifndef MINILLM_DECODE_H
#define MINILLM_DECODE_H
#include <stdint.h>

/* The arrays of one layer, in this order, DECODE_SLOTS per layer (NULL where a model has none):
 *   0 ln1.w (C)   1 ln1.b (C, LayerNorm only)
 *   2 q.w (H*D, C), or the fused qkv.w (H*D + 2*Hkv*D, C) with 3 and 4 NULL
 *   3 k.w (Hkv*D, C)   4 v.w (Hkv*D, C)   5 q.b (or qkv.b)   6 k.b   7 v.b
 *   8 o.w (C, H*D)   9 o.b (C)   10 ln2.w (C)   11 ln2.b (C)
 *  12 gate.w (F, C), NULL for a GELU MLP   13 up.w (F, C)   14 gate.b (F)   15 up.b (F)
 *  16 down.w (C, F)   17 down.b (C)
 *  18 k cache (Hkv, Smax, D) of this layer   19 v cache (Hkv, Smax, D)
 * x (C): the token's embedding in, the last block's output out. The new key and value go to slot
 * pos of the caches; attention reads slots 0..pos. rope_cos, rope_sin (D/2): the rotation at pos,
 * or NULL for no RoPE. layernorm: 1 LayerNorm (ln*.b required), 0 RMSNorm. Returns 0, or -1 when
 * out of memory, found before anything is written. */
#define DECODE_SLOTS 20
int32_t decode_step(float* x, float* const* layers, int64_t L, int64_t C, int64_t H, int64_t Hkv,
                    int64_t D, int64_t F, int64_t Smax, int64_t pos, int32_t layernorm, float eps,
                    const float* rope_cos, const float* rope_sin);

#endif
