/* csrc/attention.h -- causal grouped-query attention, flash-attention style.
 * Reference: minillm/kernels/reference.py:attention_forward, attention_backward, attention_decode.
 * q (B, H, T, D); k, v (B, Hkv, S, D) with S >= T and H % Hkv == 0; query head h reads kv head
 * h / (H / Hkv); query row i sits at position S - T + i and sees keys 0 .. S - T + i. */
#ifndef MINILLM_ATTENTION_H
#define MINILLM_ATTENTION_H
#include <stdint.h>

/* out (B, H, T, D) = softmax(q k^T * scale, causal) v; lse (B, H, T) = log-sum-exp of each row. */
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                       float scale);

/* dq (B, H, T, D), dk, dv (B, Hkv, S, D) from dout (B, H, T, D) and the forward's out and lse. */
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                        float scale);

/* out (B, H, D): one query per sequence against k_cache, v_cache (B, Hkv, Smax, D); row b sees
 * slots 0 .. lengths[b] - 1, with 1 <= lengths[b] <= Smax. */
void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* lengths, int64_t B, int64_t H, int64_t Hkv, int64_t Smax,
                      int64_t D, float scale);

#endif
