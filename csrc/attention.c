/* csrc/attention.c -- causal grouped-query attention without a (T, S) matrix in memory.
 * Reference: minillm/kernels/reference.py:attention_forward, attention_backward, attention_decode.
 *
 * Forward: FlashAttention (Dao et al. 2022, Alg. 1; loop order of FlashAttention-2, Dao 2023,
 * Alg. 1). A tile of BR query rows walks the key blocks of BC keys it can see; per row it keeps
 * the running max m, the running sum l of exp(s - m) and the unnormalised output acc. A new block
 * with row max m' rescales the old state by exp(m - m') ("online softmax", Milakov & Gimelshein
 * 2018), so only a BR x BC score tile ever exists. At the end out = acc / l, lse = m + log l.
 *
 * Backward: FlashAttention Alg. 4 (FlashAttention-2 Alg. 2). P is rebuilt from lse,
 * P_ij = exp(s_ij - lse_i), and with D_i = dout_i . out_i the softmax backward is
 * dS_ij = P_ij (dP_ij - D_i), dP_ij = dout_i . v_j. Key blocks are the outer loop: dk_j and dv_j
 * are summed over every query row (and, in GQA, over the rep query heads that share a kv head),
 * so a thread owns one (b, kv head) and all of its rep query heads -- no two threads ever write the
 * same dk, dv or dq row, and no atomics are needed.
 *
 * Decode: one query per sequence, so the scores of a row (lengths[b] floats) fit in a buffer;
 * a thread takes one kv head and its rep query heads, so the rep passes over the same cached keys
 * after the first hit cache. Scores are taken DK keys at a time (see decode_scores).
 *
 * Both passes are written as small matrix products over a BR x BC tile -- S = Q K^T, O += P V in
 * forward; S, dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K in backward -- all done by one
 * register-tiled micro-kernel (tile_gemm): C (m, n) += A (m, k) B (k, n), with A read through
 * arbitrary row/column strides (so P^T and dS^T are never formed) and B row-major with n a multiple
 * of VL. Its inner step broadcasts MR elements of A and loads NV vectors of B, for MR x NV vector
 * FMAs into MR x NV accumulators that stay in registers: 4 x 4 zmm with AVX-512, 4 x 2 ymm
 * without (16 registers only). The vectors are GCC vector extensions, so the same source builds
 * for whatever target the compiler is given. The earlier one-row-at-a-time loops (a score row,
 * then rank-1 updates of dK, dV, dQ per key) moved 2-3 floats of memory per FMA; the tiles move
 * about one per MR FMAs. B operands with D not a multiple of VL (and partial key blocks) are
 * copied to zero-padded buffers. Forward transposes every key head once, scale folded in, before
 * its tiles run (per tile and block, the scalar transposes cost as much as the tile products);
 * backward transposes each K and V block once per (kv head, block).
 *
 * Forward work items are (b, h, query tile), handed out dynamically because causal tiles late in
 * T see more keys. Backward work items are (b, kv head): a thread owns the dK, dV of its kv head
 * and the dQ of its rep query heads, so no two threads write the same row and no atomics are
 * needed; inside, key blocks are the outer loop (dK_j, dV_j stay in a block buffer) and dQ is
 * accumulated in a (rep, T, Dp) buffer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include "attention.h"
#include "half.inc"
#include "parts.inc"
#include "fastmath.inc"
#include "online_softmax.inc"

#define BR 64   /* query rows per tile */
#define BC 64   /* keys per block */
#define VL 16   /* B operands are padded to a multiple of VL floats */
#define MR 4    /* rows of A per micro-kernel step */
#if defined(__AVX512F__)
#define NV 4    /* vectors of B per micro-kernel step: 4 zmm, 16 zmm accumulators */
typedef float vec __attribute__((vector_size(64), aligned(4), may_alias));
#else
#define NV 2    /* 2 ymm: 8 accumulators leave room for the B vectors in 16 registers */
typedef float vec __attribute__((vector_size(32), aligned(4), may_alias));
#endif
#define VW ((int64_t)(sizeof(vec) / sizeof(float)))   /* floats per vector */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

static void* xmalloc(size_t n) {
    void* p = malloc(n > 0 ? n : 1);
    if (p == NULL) abort();
    return p;
}

/* C (MR, NV*VW) (+)= A (MR, k) B (k, NV*VW): the register tile. */
static inline void tile_full(float* c, int64_t ldc, const float* a, int64_t ars, int64_t acs,
                             const float* b, int64_t ldb, int64_t k, int accumulate) {
    vec acc[MR][NV];
    #pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = accumulate ? *(const vec*)(c + r * ldc + v * VW) : (vec){0};
    for (int64_t p = 0; p < k; p++) {
        vec bv[NV];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = *(const vec*)(b + p * ldb + v * VW);
        #pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const float ar = a[r * ars + p * acs];
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += ar * bv[v];
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++) *(vec*)(c + r * ldc + v * VW) = acc[r][v];
}

/* One row, one vector: the edges of C that the full tile does not cover. */
static inline void tile_edge(float* c, const float* a, int64_t acs, const float* b, int64_t ldb,
                             int64_t k, int accumulate) {
    vec acc = accumulate ? *(const vec*)c : (vec){0};
    for (int64_t p = 0; p < k; p++) acc += a[p * acs] * *(const vec*)(b + p * ldb);
    *(vec*)c = acc;
}

/* C (m, n) = [C +] A (m, k) B (k, n); A[i][p] = a[i * ars + p * acs]; B, C row-major (ldb, ldc);
 * n % VW == 0 (callers pad to VL). In NumPy: c[:m, :n] (+)= A @ b[:k, :n]. */
static void tile_gemm(float* c, int64_t ldc, const float* a, int64_t ars, int64_t acs,
                      const float* b, int64_t ldb, int64_t m, int64_t n, int64_t k, int accumulate) {
    const int64_t m_full = m - m % MR, n_full = n - n % (NV * VW);
    for (int64_t i = 0; i < m_full; i += MR)
        for (int64_t j = 0; j < n_full; j += NV * VW)
            tile_full(c + i * ldc + j, ldc, a + i * ars, ars, acs, b + j, ldb, k, accumulate);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = i < m_full ? n_full : 0; j < n; j += VW)
            tile_edge(c + i * ldc + j, a + i * ars, acs, b + j, ldb, k, accumulate);
}

/* Kt (D, BC) <- c * rows j0 .. j0+bc-1 of k (., D) transposed, columns bc .. BC-1 zero. */
static void transpose_block(float* Kt, const float* k, int64_t j0, int64_t bc, int64_t D, float c) {
    for (int64_t d = 0; d < D; d++) {
        for (int64_t j = 0; j < bc; j++) Kt[d * BC + j] = c * k[(j0 + j) * D + d];
        for (int64_t j = bc; j < BC; j++) Kt[d * BC + j] = 0.0f;
    }
}

/* n rows of src (n, D) as a (n, Dp) array: src itself when D == Dp, else a zero-padded copy in buf. */
static const float* padded_rows(float* buf, const float* src, int64_t n, int64_t D, int64_t Dp) {
    if (D == Dp) return src;
    for (int64_t i = 0; i < n; i++) {
        memcpy(buf + i * Dp, src + i * D, sizeof(float) * D);
        memset(buf + i * Dp + D, 0, sizeof(float) * (Dp - D));
    }
    return buf;
}

/* ------------------------------------------------------------------------------ forward */
typedef struct {          /* one thread's forward scratch */
    float* Vb;            /* (BC, Dp) value block, zero-padded (when D % VL != 0) */
    float* sc;            /* (BR, BC) scores, then P */
    float* acc;           /* (BR, Dp) unnormalised output */
} FwdScratch;

/* Rows i0 .. i0+br-1 of one head: qh (T, D) against the scaled, transposed keys Kt (D, Sp) and the
 * values vh (S, D) -> oh (T, D), lh (T,). */
static void forward_tile(float* oh, float* lh, const float* qh, const float* Kt, int64_t Sp,
                         const float* vh, int64_t i0, int64_t br, int64_t off, int64_t D, FwdScratch* w) {
    const int64_t Dp = round_up(D, VL);
    const int64_t key_end = off + i0 + br;           /* keys the tile's last row can see */
    float m[BR], l[BR];                              /* running max and sum per row */
    for (int64_t i = 0; i < br; i++) { m[i] = -INFINITY; l[i] = 0.0f; }
    memset(w->acc, 0, sizeof(float) * br * Dp);
    for (int64_t j0 = 0; j0 < key_end; j0 += BC) {
        const int64_t bc = min64(BC, key_end - j0), ncol = round_up(bc, VL);
        tile_gemm(w->sc, BC, qh + i0 * D, D, 1, Kt + j0, Sp, br, ncol, D, 0);  /* S = Q K^T */
        for (int64_t i = 0; i < br; i++) {
            /* causal: row i sees keys < off + i0 + i + 1, i.e. the first jn of this block */
            const int64_t jn = min64(bc, off + i0 + i + 1 - j0);
            float* s = w->sc + i * BC;
            if (jn > 0)
                online_softmax_step(s, jn, &m[i], &l[i], w->acc + i * Dp, Dp);  /* s -> P */
            for (int64_t j = jn > 0 ? jn : 0; j < ncol; j++) s[j] = 0.0f;  /* masked: P = 0 */
        }
        const float* Vb = padded_rows(w->Vb, vh + j0 * D, bc, D, Dp);
        tile_gemm(w->acc, Dp, w->sc, BC, 1, Vb, Dp, br, Dp, bc, 1);         /* O += P V */
    }
    for (int64_t i = 0; i < br; i++) {
        /* l >= 1: the row's max term contributes exp(0) (key 0 is always visible) */
        const float inv_l = 1.0f / l[i];
        float* o = oh + (i0 + i) * D;
        #pragma omp simd
        for (int64_t d = 0; d < D; d++) o[d] = w->acc[i * Dp + d] * inv_l;
        lh[i0 + i] = m[i] + logf(l[i]);
    }
}

/* Kt (D, Sp) <- c * kh (S, D) transposed, columns S .. Sp-1 zero. */
static void transpose_head(float* Kt, const float* kh, int64_t S, int64_t Sp, int64_t D, float c) {
    for (int64_t j0 = 0; j0 < S; j0 += 16)             /* 16 keys at a time: a cache line per row */
        for (int64_t d = 0; d < D; d++)
            for (int64_t j = j0; j < min64(j0 + 16, S); j++) Kt[d * Sp + j] = c * kh[j * D + d];
    for (int64_t d = 0; d < D; d++)
        for (int64_t j = S; j < Sp; j++) Kt[d * Sp + j] = 0.0f;
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                       float scale) {
    const int64_t rep = H / Hkv;                    /* query heads per kv head */
    const int64_t ntiles = (T + BR - 1) / BR, Dp = round_up(D, VL);
    /* + VL: a row stride of S = 1024 floats (4 KB) would put every row of a key block in the same
     * L1 set (4K aliasing); one more cache line per row spreads them over the sets */
    const int64_t Sp = round_up(S, BC) + VL;
    /* every key head transposed once, the scale folded in: (B * Hkv, D, Sp) */
    float* Kt = xmalloc(sizeof(float) * B * Hkv * D * Sp);
    #pragma omp parallel if (B * H * T * S * D >= (1 << 18))
    {
        #pragma omp for schedule(static)
        for (int64_t bk = 0; bk < B * Hkv; bk++)
            transpose_head(Kt + bk * D * Sp, k + bk * S * D, S, Sp, D, scale);
        FwdScratch w = {xmalloc(sizeof(float) * BC * Dp), xmalloc(sizeof(float) * BR * BC),
                        xmalloc(sizeof(float) * BR * Dp)};
        /* dynamic: causal tiles late in T see more keys than early ones */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; bh++) {
            for (int64_t tile = 0; tile < ntiles; tile++) {
                const int64_t b = bh / H, h = bh % H, kvh = b * Hkv + h / rep;
                const int64_t i0 = tile * BR;
                forward_tile(out + bh * T * D, lse + bh * T, q + bh * T * D, Kt + kvh * D * Sp, Sp,
                             v + kvh * S * D, i0, min64(BR, T - i0), S - T, D, &w);
            }
        }
        free(w.Vb);
        free(w.sc);
        free(w.acc);
    }
    free(Kt);
}

/* ------------------------------------------------------------------------------ backward */
typedef struct {          /* one thread's backward scratch */
    float *Kt, *Vt;       /* (D, BC) key and value blocks, transposed */
    float* Kb;            /* (BC, Dp) key block, zero-padded */
    float *dKb, *dVb;     /* (BC, Dp) the block's dK, dV, summed over rep heads and all rows */
    float *P, *dS;        /* (BR, BC) one tile's P and dS */
    float *Qp, *dOp;      /* (rep, T, Dp) padded q and dout of the kv head's query heads */
    float* dQ;            /* (rep, T, Dp) dq accumulated over key blocks */
    float* Di;            /* (rep, T) D_i = dout_i . out_i */
} BwdScratch;

/* One (query tile, key block) pair: P, dS of rows i0..i0+br-1 against keys j0..j0+bc-1, then
 * dV_j += P^T dO_i, dK_j += dS^T Q_i, dQ_i += dS K_j. Qh, dOh, dQh (T, Dp); lh, Dh (T,); Kb is the
 * (bc, Dp) key block. */
static void backward_tile(const float* Qh, const float* dOh, float* dQh, const float* lh,
                          const float* Dh, const float* Kb, int64_t i0, int64_t br, int64_t j0,
                          int64_t bc, int64_t off, int64_t D, float scale, BwdScratch* w) {
    const int64_t ncol = round_up(bc, VL), Dp = round_up(D, VL);
    tile_gemm(w->P, BC, Qh + i0 * Dp, Dp, 1, w->Kt, BC, br, ncol, D, 0);    /* S = Q K^T */
    tile_gemm(w->dS, BC, dOh + i0 * Dp, Dp, 1, w->Vt, BC, br, ncol, D, 0);  /* dP = dO V^T */
    for (int64_t i = 0; i < br; i++) {
        const int64_t jn = min64(bc, off + i0 + i + 1 - j0);   /* visible keys, may be <= 0 */
        const int64_t jv = jn > 0 ? jn : 0;
        const float lse_i = lh[i0 + i], D_i = Dh[i0 + i];
        float *p = w->P + i * BC, *ds = w->dS + i * BC;
        #pragma omp simd
        for (int64_t j = 0; j < jv; j++) {
            p[j] = fast_expf(p[j] - lse_i);                    /* P_ij (s <= lse) */
            ds[j] = p[j] * (ds[j] - D_i) * scale;             /* dS_ij, incl. d(s)/d(qk) */
        }
        for (int64_t j = jv; j < BC; j++) p[j] = ds[j] = 0.0f;
    }
    tile_gemm(w->dVb, Dp, w->P, 1, BC, dOh + i0 * Dp, Dp, bc, Dp, br, 1);    /* dV += P^T dO */
    tile_gemm(w->dKb, Dp, w->dS, 1, BC, Qh + i0 * Dp, Dp, bc, Dp, br, 1);    /* dK += dS^T Q */
    tile_gemm(dQh + i0 * Dp, Dp, w->dS, BC, 1, Kb, Dp, br, Dp, bc, 1);       /* dQ += dS K */
}

/* Key block j0 of one (b, kv head) against every query row of its rep heads that sees it. */
static void backward_block(float* dkh, float* dvh, const float* kh, const float* vh, int64_t j0,
                           int64_t rep, int64_t T, int64_t S, int64_t D, float scale,
                           const float* lse_g, BwdScratch* w) {
    const int64_t Dp = round_up(D, VL), off = S - T, bc = min64(BC, S - j0);
    const int64_t i_first = j0 - off > 0 ? j0 - off : 0;   /* the first row that sees key j0 */
    transpose_block(w->Kt, kh, j0, bc, D, scale);          /* the scale folded into K^T */
    transpose_block(w->Vt, vh, j0, bc, D, 1.0f);
    const float* Kb = padded_rows(w->Kb, kh + j0 * D, bc, D, Dp);
    memset(w->dKb, 0, sizeof(float) * BC * Dp);
    memset(w->dVb, 0, sizeof(float) * BC * Dp);
    for (int64_t g = 0; g < rep; g++)
        for (int64_t i0 = i_first - i_first % BR; i0 < T; i0 += BR)
            backward_tile(w->Qp + g * T * Dp, w->dOp + g * T * Dp, w->dQ + g * T * Dp,
                          lse_g + g * T, w->Di + g * T, Kb, i0, min64(BR, T - i0), j0, bc, off,
                          D, scale, w);
    for (int64_t j = 0; j < bc; j++) {
        memcpy(dkh + (j0 + j) * D, w->dKb + j * Dp, sizeof(float) * D);
        memcpy(dvh + (j0 + j) * D, w->dVb + j * Dp, sizeof(float) * D);
    }
}

/* One (b, kv head): its rep query heads' q, dout padded to (T, Dp), D_i, then the key blocks. */
static void backward_head(float* dq, float* dk, float* dv, const float* dout, const float* q,
                          const float* k, const float* v, const float* out, const float* lse,
                          int64_t b, int64_t hk, int64_t H, int64_t Hkv, int64_t T, int64_t S,
                          int64_t D, float scale, BwdScratch* w) {
    const int64_t rep = H / Hkv, Dp = round_up(D, VL), bk = b * Hkv + hk;
    const int64_t bh0 = b * H + hk * rep;          /* the first query head reading kv head hk */
    for (int64_t g = 0; g < rep; g++) {
        const int64_t bh = bh0 + g;
        for (int64_t i = 0; i < T; i++) {
            const float* doi = dout + (bh * T + i) * D;
            const float* oi = out + (bh * T + i) * D;
            float acc = 0.0f;
            #pragma omp simd reduction(+ : acc)
            for (int64_t d = 0; d < D; d++) acc += doi[d] * oi[d];
            w->Di[g * T + i] = acc;
            memcpy(w->Qp + (g * T + i) * Dp, q + (bh * T + i) * D, sizeof(float) * D);
            memcpy(w->dOp + (g * T + i) * Dp, doi, sizeof(float) * D);
            memset(w->Qp + (g * T + i) * Dp + D, 0, sizeof(float) * (Dp - D));
            memset(w->dOp + (g * T + i) * Dp + D, 0, sizeof(float) * (Dp - D));
        }
    }
    memset(w->dQ, 0, sizeof(float) * rep * T * Dp);
    for (int64_t j0 = 0; j0 < S && j0 - (S - T) < T; j0 += BC)   /* blocks some row sees */
        backward_block(dk + bk * S * D, dv + bk * S * D, k + bk * S * D, v + bk * S * D, j0,
                       rep, T, S, D, scale, lse + bh0 * T, w);
    for (int64_t g = 0; g < rep; g++)
        for (int64_t i = 0; i < T; i++)
            memcpy(dq + ((bh0 + g) * T + i) * D, w->dQ + (g * T + i) * Dp, sizeof(float) * D);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                        float scale) {
    const int64_t rep = H / Hkv, Dp = round_up(D, VL);
    memset(dk, 0, sizeof(float) * B * Hkv * S * D);   /* keys no row sees keep a zero gradient */
    memset(dv, 0, sizeof(float) * B * Hkv * S * D);
    #pragma omp parallel if (B * H * T * S * D >= (1 << 18))
    {
        const size_t blk = sizeof(float) * BC * Dp, rows = sizeof(float) * rep * T * Dp;
        BwdScratch w = {xmalloc(sizeof(float) * D * BC), xmalloc(sizeof(float) * D * BC),
                        xmalloc(blk), xmalloc(blk), xmalloc(blk),
                        xmalloc(sizeof(float) * BR * BC), xmalloc(sizeof(float) * BR * BC),
                        xmalloc(rows), xmalloc(rows), xmalloc(rows),
                        xmalloc(sizeof(float) * rep * T)};
        #pragma omp for schedule(dynamic, 1)
        for (int64_t bk = 0; bk < B * Hkv; bk++)     /* one (b, kv head) per iteration */
            backward_head(dq, dk, dv, dout, q, k, v, out, lse, bk / Hkv, bk % Hkv, H, Hkv, T, S,
                          D, scale, &w);
        float* bufs[] = {w.Kt, w.Vt, w.Kb, w.dKb, w.dVb, w.P, w.dS, w.Qp, w.dOp, w.dQ, w.Di};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    }
}

/* ------------------------------------------------------------------------------ decode */
/* s[0:n] = scale * (q . k_j) for the n cached keys k (n, D). One key at a time would be a chain
 * of dependent FMAs (each waits ~4 cycles for the previous) ending in a horizontal sum; DK keys at
 * a time keep DK independent 8-lane partial sums, so the FMAs overlap, and the horizontal sums
 * are paid once per key at the end. Written in plain C with fixed inner trip counts, which the
 * compiler turns into one vector FMA per key and 8 lanes of d. */
#define DK 8
static void decode_scores(float* s, const float* q, const float* k, int64_t n, int64_t D,
                          float scale) {
    const int64_t D8 = D - D % 8;
    int64_t j = 0;
    for (; j + DK <= n; j += DK) {
        float acc[DK][8] = {{0.0f}};
        for (int64_t d = 0; d < D8; d += 8)
            for (int jj = 0; jj < DK; jj++)
                for (int l = 0; l < 8; l++) acc[jj][l] += q[d + l] * k[(j + jj) * D + d + l];
        for (int jj = 0; jj < DK; jj++) {
            float t = 0.0f;
            for (int l = 0; l < 8; l++) t += acc[jj][l];
            for (int64_t d = D8; d < D; d++) t += q[d] * k[(j + jj) * D + d];
            s[j + jj] = t * scale;
        }
    }
    for (; j < n; j++) {                                   /* the last n % DK keys */
        float t = 0.0f;
        for (int64_t d = 0; d < D; d++) t += q[d] * k[j * D + d];
        s[j] = t * scale;
    }
}

/* o[0:D] += sum_j p[j] * v_j over n cached values v (n, D), four keys per pass over o so o is
 * loaded and stored once per four keys instead of once per key. A cache read in blocks (paged)
 * calls this once per block: with block sizes that are multiples of 4 the additions happen in the
 * order of one call over the whole run, so both layouts give the same result to the bit. */
static void values_acc(float* o, const float* p, const float* v, int64_t n, int64_t D) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float p0 = p[j], p1 = p[j + 1], p2 = p[j + 2], p3 = p[j + 3];
        const float *v0 = v + j * D, *v1 = v0 + D, *v2 = v1 + D, *v3 = v2 + D;
        #pragma omp simd
        for (int64_t d = 0; d < D; d++) o[d] += p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
    }
    for (; j < n; j++) {
        const float pj = p[j], *vj = v + j * D;
        #pragma omp simd
        for (int64_t d = 0; d < D; d++) o[d] += pj * vj[d];
    }
}

/* The same two over a float16 cache (keys and values stored as IEEE half, kv_f16): the keys or
 * values of up to WIDE_FLOATS / D positions at a time are widened to float32 into an L1 buffer
 * (F16C's vcvtph2ps, 8 or 16 per instruction), then read by the float32 kernels above. The passes
 * hold a multiple of DK (and so of 4) positions, where both kernels start a new group anyway: the
 * float32 arithmetic on the widened values is the one a single pass would do, so blocks of a paged
 * cache give what one contiguous run gives, to the bit. (GCC 12
 * turns a loop of (float) casts of _Float16 into one scalar conversion per element: 15% slower
 * decode at 16-80 positions than the float32 cache, measured, where the widened passes are faster.)
 * Without F16C (the generic variant) half.inc converts each element. Heads wider than
 * WIDE_FLOATS / DK dims widen DK positions (4 for the values) at a time into a heap buffer.
 */
#define WIDE_FLOATS 8192

static void decode_scores_h(float* s, const float* q, const uint16_t* k, int64_t n, int64_t D, float scale) {
    float buf[WIDE_FLOATS];
    const int64_t per = WIDE_FLOATS / D / DK * DK;        /* positions per pass */
    if (per >= DK) {
        for (int64_t j = 0; j < n; j += per) {
            const int64_t m = n - j < per ? n - j : per;
            halves_to_floats(buf, k + j * D, m * D);
            decode_scores(s + j, q, buf, m, D, scale);
        }
        return;
    }
    float* w = xmalloc(sizeof(float) * (size_t)(DK * D));  /* D > WIDE_FLOATS / DK: DK keys a pass */
    for (int64_t j = 0; j < n; j += DK) {
        const int64_t m = n - j < DK ? n - j : DK;
        halves_to_floats(w, k + j * D, m * D);
        decode_scores(s + j, q, w, m, D, scale);
    }
    free(w);
}

static void values_acc_h(float* o, const float* p, const uint16_t* v, int64_t n, int64_t D) {
    float buf[WIDE_FLOATS];
    const int64_t per = WIDE_FLOATS / D / 4 * 4;
    if (per >= 4) {
        for (int64_t j = 0; j < n; j += per) {
            const int64_t m = n - j < per ? n - j : per;
            halves_to_floats(buf, v + j * D, m * D);
            values_acc(o, p + j, buf, m, D);
        }
        return;
    }
    float* w = xmalloc(sizeof(float) * (size_t)(4 * D));
    for (int64_t j = 0; j < n; j += 4) {
        const int64_t m = n - j < 4 ? n - j : 4;
        halves_to_floats(w, v + j * D, m * D);
        values_acc(o, p + j, w, m, D);
    }
    free(w);
}

#define CHUNK 64

/* The rep query heads qg (rep, D) that read one kv head against its first n keys and values, kept
 * in blocks of block_size positions: logical block b at kh + table[b] * stride (and vh + ...), each
 * (block_size, D) -> og (rep, D). s: scratch of rep * (n + 2) floats (the scores, then
 * exp(score - max); each head's max and sum after them). The whole row is attention_paged_part's
 * piece 0..n, divided by its sum of exponentials. kv_f16: kh, vh hold float16 (stride and offsets
 * count elements either way), else float32. */
void attention_paged_head(float* og, const float* qg, const void* kh, const void* vh, int32_t kv_f16,
                          const int32_t* table, int64_t block_size, int64_t stride, int64_t rep, int64_t n, int64_t D,
                          float scale, float* s) {
    float *mx = s + rep * n, *sum = mx + rep;
    attention_paged_part(og, mx, sum, qg, kh, vh, kv_f16, table, block_size, stride, rep, 0, n, D, scale, s);
    for (int64_t g = 0; g < rep; g++) {
        const float inv = 1.0f / sum[g];
        for (int64_t d = 0; d < D; d++) og[g * D + d] *= inv;
    }
}

/* Ask for positions t0..t1-1 of a head's rows (kh, through its block table) ahead of their use:
 * at decode a kv head's keys and values were written over many steps and sit in the last-level
 * cache, and read in order they came at ~10 GB/s per core (each line a fresh wait for the
 * prefetchers to catch up); asked for at once (into L2: into L1 the requests queued behind each
 * other), the lines come in parallel: a decode step's attention took 0.85 of the time (Xeon,
 * llama-134m, Q4_0, positions 16-80). Only the first PREFETCH_ROWS positions: all of a
 * 1024-position head's lines asked for at once made the kernel wait on them (1 query vs 1024 keys
 * 0.82x torch in one run), while the first 128 took the same time as none there. */
#define PREFETCH_ROWS 128
static void prefetch_rows(const void* kh, int64_t elem, const int32_t* table, int64_t block_size, int64_t stride,
                          int64_t t0, int64_t t1, int64_t D) {
    for (int64_t t = t0; t < t1;) {
        const int64_t b = t / block_size, end = (b + 1) * block_size < t1 ? (b + 1) * block_size : t1;
        const char* p = (const char*)kh + (table[b] * stride + (t - b * block_size) * D) * elem;
        for (int64_t i = 0; i < (end - t) * D * elem; i += 64) __builtin_prefetch(p + i, 0, 2);
        t = end;
    }
}

/* Positions t0..t1-1 of attention_paged_head's row (the whole row, or one piece of a long row that
 * several threads share): per query head g, mx[g] = the largest score, sum[g] = sum of
 * exp(score - mx[g]) and og[g] = sum of exp(score - mx[g]) v (not divided by sum);
 * attention_merge_parts combines pieces. The
 * range is walked block by block, each block in chunks of CHUNK positions, every head's scores (and
 * later its weighted values) taken from one chunk before the next: the keys and values stream from
 * memory once, not once per query head (a chunk, 16 KB at D = 64, stays in L1 while the rep heads
 * read it). A score depends on its key alone and values_acc adds in groups of 4 keys in order, so
 * with block sizes that are multiples of DK the cuts change no result: a paged cache gives what one
 * contiguous run gives. s: rep * (t1 - t0) floats. */
void attention_paged_part(float* og, float* mx, float* sum, const float* qg, const void* kh, const void* vh,
                          int32_t kv_f16, const int32_t* table, int64_t block_size, int64_t stride, int64_t rep,
                          int64_t t0, int64_t t1, int64_t D, float scale, float* s) {
    const int64_t n = t1 - t0, elem = kv_f16 ? 2 : 4;
    const int64_t ahead = n < PREFETCH_ROWS ? t1 : t0 + PREFETCH_ROWS;
    prefetch_rows(kh, elem, table, block_size, stride, t0, ahead, D);
    prefetch_rows(vh, elem, table, block_size, stride, t0, ahead, D);
    for (int64_t t = t0; t < t1;) {                    /* the run of positions inside t's block */
        const int64_t b = t / block_size, end = (b + 1) * block_size < t1 ? (b + 1) * block_size : t1;
        const int64_t at = table[b] * stride + (t - b * block_size) * D;     /* in elements */
        for (int64_t c = 0; c < end - t; c += CHUNK) {
            const int64_t m = end - t - c <= CHUNK ? end - t - c : CHUNK;
            for (int64_t g = 0; g < rep; g++) {
                float* sg = s + g * n + (t - t0) + c;
                if (kv_f16)
                    decode_scores_h(sg, qg + g * D, (const uint16_t*)kh + at + c * D, m, D, scale);
                else
                    decode_scores(sg, qg + g * D, (const float*)kh + at + c * D, m, D, scale);
            }
        }
        t = end;
    }
    for (int64_t g = 0; g < rep; g++) {
        float* sg = s + g * n;
        float m = sg[0];
        for (int64_t j = 1; j < n; j++) m = sg[j] > m ? sg[j] : m;
        float total = 0.0f;
        #pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < n; j++) {
            sg[j] = fast_expf(sg[j] - m);
            total += sg[j];
        }
        mx[g] = m, sum[g] = total;
        for (int64_t d = 0; d < D; d++) og[g * D + d] = 0.0f;
    }
    for (int64_t t = t0; t < t1;) {
        const int64_t b = t / block_size, end = (b + 1) * block_size < t1 ? (b + 1) * block_size : t1;
        const int64_t at = table[b] * stride + (t - b * block_size) * D;
        for (int64_t c = 0; c < end - t; c += CHUNK) {
            const int64_t m = end - t - c <= CHUNK ? end - t - c : CHUNK;
            for (int64_t g = 0; g < rep; g++) {
                const float* pg = s + g * n + (t - t0) + c;
                if (kv_f16)
                    values_acc_h(og + g * D, pg, (const uint16_t*)vh + at + c * D, m, D);
                else
                    values_acc(og + g * D, pg, (const float*)vh + at + c * D, m, D);
            }
        }
        t = end;
    }
}

/* og (rep, D) = the softmax-weighted values of a row from its `parts` pieces (attention_paged_part):
 * piece i holds o (rep, D), mx (rep) and sum (rep) at part + i * (rep * (D + 2)), in that order. */
void attention_merge_parts(float* og, const float* part, int64_t parts, int64_t rep, int64_t D) {
    const int64_t size = rep * (D + 2);
    for (int64_t g = 0; g < rep; g++) {
        float m = -INFINITY;
        for (int64_t i = 0; i < parts; i++) {
            const float mi = part[i * size + rep * D + g];
            m = mi > m ? mi : m;
        }
        float total = 0.0f;
        for (int64_t d = 0; d < D; d++) og[g * D + d] = 0.0f;
        for (int64_t i = 0; i < parts; i++) {
            const float* p = part + i * size;
            const float w = expf(p[rep * D + g] - m);
            total += w * p[rep * D + rep + g];
            for (int64_t d = 0; d < D; d++) og[g * D + d] += w * p[g * D + d];
        }
        const float inv = 1.0f / total;
        for (int64_t d = 0; d < D; d++) og[g * D + d] *= inv;
    }
}

/* The contiguous cache: one block holding all n positions. */
void attention_decode_head(float* og, const float* qg, const float* kh, const float* vh, int64_t rep,
                           int64_t n, int64_t D, float scale, float* s) {
    const int32_t first = 0;
    attention_paged_head(og, qg, kh, vh, 0, &first, n, 0, rep, n, D, scale, s);
}

void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* lengths, int64_t B, int64_t H, int64_t Hkv, int64_t Smax,
                      int64_t D, float scale) {
    const int64_t rep = H / Hkv;
    /* Work is what the valid slots hold, not the allocated Smax. Below ~0.5M multiply-adds a call
     * takes ~0.1 ms on one core, less than waking a second (sleeping) OpenMP thread costs; a
     * 1024-token cache (12 heads x 64) is above the line and splits across threads. */
    int64_t filled = 0;
    for (int64_t b = 0; b < B; b++) filled += lengths[b];
    #pragma omp parallel if (filled * H * D >= (1 << 19))
    {
        float* s = xmalloc(sizeof(float) * rep * (Smax + 2));  /* (rep, n) scores, then P, of one kv head */
        #pragma omp for schedule(static)
        for (int64_t bk = 0; bk < B * Hkv; bk++) {
            const int64_t b = bk / Hkv, hk = bk % Hkv;
            const int64_t n = lengths[b];               /* 1 <= n <= Smax, checked by the caller */
            const float* kh = k_cache + bk * Smax * D;  /* (Smax, D) */
            const float* vh = v_cache + bk * Smax * D;
            const float* qg = q + (b * H + hk * rep) * D; /* (rep, D): the heads reading this kv head */
            attention_decode_head(out + (b * H + hk * rep) * D, qg, kh, vh, rep, n, D, scale, s);
        }
        free(s);
    }
}
