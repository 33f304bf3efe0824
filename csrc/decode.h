/* csrc/decode.h -- one step of new tokens through every block of a Transformer in one OpenMP
 * parallel region (paged_step): any rows, each a token of some sequence at its own position, over a
 * paged cache -- the serving engine's step, and with a one-block cache a decode step. References: minillm/kernels/reference.py (decode_step, paged_step), and
 * Transformer._block_forward with a KV cache (minillm/model.py), which runs the same kernels one
 * Python call at a time. */
#ifndef MINILLM_DECODE_H
#define MINILLM_DECODE_H
#include <stdint.h>

/* A linear layer's weight W (N, K): float32, or quantized as csrc/quant.h describes. */
typedef struct {
    const void* w;         /* float32 (N, K) when fmt < 0, else the rows of W in format fmt */
    const float* scale;    /* quant.h's scale array for fmt, or NULL */
    const uint8_t* zero;   /* INT4 zero points, or NULL */
    int32_t fmt;           /* -1: float32; 0..6: quant.h's format ids; GGML_DECODE_FMT + ggml type:
                              ggml blocks (ggml_blocks.h) */
    int64_t group;         /* INT4 group size (0 otherwise) */
} decode_linear_t;

/* Per layer, DECODE_VECS float pointers (NULL where a model has none), in this order:
 *   0 ln1.w (C)  1 ln1.b (C, LayerNorm only)  2 q.b (H*D; the fused qkv.b (H*D + 2*Hkv*D))
 *   3 k.b (Hkv*D)  4 v.b  5 o.b (C)  6 ln2.w (C)  7 ln2.b (C)  8 gate.b (F)  9 up.b (F)  10 down.b (C)
 *  11 K pages (num_blocks, Hkv, block_size, D) of this layer  12 V pages (same shape)
 * and DECODE_LINEARS weights (w NULL where a model has none), in this order:
 *   0 q (H*D, C), or the fused qkv (H*D + 2*Hkv*D, C) with 1 and 2 empty   1 k (Hkv*D, C)
 *   2 v (Hkv*D, C)   3 o (C, H*D)   4 gate (F, C), empty for a GELU MLP   5 up (F, C)   6 down (C, F)
 * x (M, C): the rows' embeddings in, the last block's outputs out. Row m is the token at position
 * row_pos[m] of the sequence whose block table is tables[row_table[m]] (n_tables tables of
 * max_blocks block ids; Kwon et al. 2023): its key and value go to the slot of that position, and
 * it attends over positions 0..row_pos[m] of its sequence -- those already cached, and those of
 * other rows of the same sequence written in this step (a prefill chunk), as every row's keys are
 * stored before any row attends. A contiguous cache (Hkv, Smax, D) per layer is the case of one
 * table {0} and one block of Smax positions (one token of one sequence: kernels.decode_step).
 * rope_cos, rope_sin (M, D/2): each row's rotation, or NULL for no RoPE. layernorm: 1 LayerNorm
 * (ln*.b required), 0 RMSNorm. kv_f16: 1 when the K and V pages hold float16 (IEEE half, as llama.cpp's
 * default cache: half the bytes a step reads from it; keys and values rounded to nearest even when
 * stored, widened to float32 when read), 0 float32; the vecs pointers then point at float16 pages. With logits (n_head, V) given, the step ends with the model's head
 * on the rows head_rows (n_head): logits = norm_f(x) W_head^T, W_head (V, C), norm_f weights lnf_w
 * (C) and lnf_b (C, LayerNorm only); x then holds the last block's outputs still. Returns 0, -1
 * when out of memory, -2 when a row, position, block id or head row is out of range (every one the
 * step would follow is checked), both before anything is written. */
#define DECODE_VECS 13
#define DECODE_LINEARS 7
int32_t paged_step(float* x, int64_t M, float* const* vecs, const decode_linear_t* linears, int64_t L,
                   int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t F, int64_t num_blocks, int64_t block_size,
                   const int32_t* tables, int64_t n_tables, int64_t max_blocks, const int32_t* row_table,
                   const int32_t* row_pos, int32_t layernorm, int32_t kv_f16, float eps, const float* rope_cos,
                   const float* rope_sin, const float* lnf_w, const float* lnf_b, const decode_linear_t* head,
                   int64_t V, const int32_t* head_rows, int64_t n_head, float* logits);

/* decode_run's choice of the next token: given the logits (V) of step i and their argmax greedy (the
 * first of the largest, or -1 when one is NaN), the token fed to step i + 1 (an id below n_vocab), or
 * -1 to end the run after step i. */
typedef int32_t (*decode_next_fn)(void* ctx, const float* logits, int64_t i, int32_t greedy);
/* Up to n decode steps of one sequence on a contiguous cache (as paged_step with one table {0} and one
 * block of Smax positions: K and V pages (1, Hkv, Smax, D) per layer in vecs), in one parallel region:
 * the threads stay in it from token to token, and no step returns to the caller. Step i runs the
 * token fed to it (token, then each one chosen) at position pos + i: x = embed[token] (+ pos_embed[pos
 * + i] for learned positions; embed (n_vocab, C), pos_embed (n_pos, C) or NULL), RoPE rows
 * rope_cos, rope_sin + (pos + i) D/2 (each (Smax, D/2)) or NULL, then paged_step's one-row step with
 * its head into logits (V), on the same values in the same order; then the next token: next(ctx,
 * logits, i, greedy), or with next NULL greedy, the first of the largest logits; it goes to tokens[i] (n). *done:
 * the steps run, each of which wrote its key and value at pos + i. Returns 0; -1 out of memory, -2 an
 * argument out of range (pos + n past Smax or n_pos, a token >= n_vocab, ...), both before anything is written;
 * -3 (next NULL) logits holding NaN, -4 the chosen id (next's, or the argmax when V > n_vocab) not below n_vocab;
 * these two after step *done - 1. */
int32_t decode_run(const float* embed, int64_t n_vocab, const float* pos_embed, int64_t n_pos, float* const* vecs,
                   const decode_linear_t* linears, int64_t L, int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t F,
                   int64_t Smax, int32_t layernorm, int32_t kv_f16, float eps, const float* rope_cos,
                   const float* rope_sin,
                   const float* lnf_w, const float* lnf_b, const decode_linear_t* head, int64_t V, int32_t token,
                   int64_t pos, int64_t n, decode_next_fn next, void* ctx, float* logits, int32_t* tokens,
                   int64_t* done);
#endif
