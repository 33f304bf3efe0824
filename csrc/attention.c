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
 * Forward work items are (b, h, query tile), handed out dynamically because causal tiles late
 * in T see more keys. Scores are computed one row at a time against K^T (the block transposed to
 * D x BC), so the inner loop runs over keys with unit stride and vectorises; exp is fast_expf of
 * fastmath.inc. (A 4-row register-tiled version of the score and P V products, as in matmul.c,
 * measured slower here -- 19 vs 21 GF/s per core at D = 64 -- so the simple loops stay.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "attention.h"
#include "parts.inc"
#include "fastmath.inc"
#include "online_softmax.inc"

#define BR 32   /* query rows per forward tile */
#define BC 64   /* keys per block: K^T and V blocks of BC x D floats stay in L1 for D = 64 */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void* xmalloc(size_t n) {
    void* p = malloc(n > 0 ? n : 1);
    if (p == NULL) abort();
    return p;
}

/* Kt (D, BC) <- rows j0 .. j0+bc-1 of k (., D): the transpose, so a score row is unit-stride. */
static void transpose_block(float* Kt, const float* k, int64_t j0, int64_t bc, int64_t D) {
    for (int64_t j = 0; j < bc; j++)
        for (int64_t d = 0; d < D; d++) Kt[d * BC + j] = k[(j0 + j) * D + d];
}

/* s[0:bc] = scale * (qi . k_j) for the bc keys of a transposed block Kt (D, BC). */
static void score_row(float* s, const float* qi, const float* Kt, int64_t bc, int64_t D,
                      float scale) {
    for (int64_t j = 0; j < bc; j++) s[j] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
        const float qd = qi[d] * scale;
        const float* kt = Kt + d * BC;
        #pragma omp simd
        for (int64_t j = 0; j < bc; j++) s[j] += qd * kt[j];
    }
}

/* ------------------------------------------------------------------------------ forward */
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                       float scale) {
    const int64_t rep = H / Hkv;                  /* query heads per kv head */
    const int64_t off = S - T;                  /* query row i sits at position off + i */
    const int64_t ntiles = (T + BR - 1) / BR;
    #pragma omp parallel if (B * H * T * S * D >= (1 << 18))
    {
        float* Kt = xmalloc(sizeof(float) * D * BC);         /* (D, BC) transposed key block */
        float* sc = xmalloc(sizeof(float) * BR * BC);        /* (BR, BC) scores, then P */
        float* acc = xmalloc(sizeof(float) * BR * D);        /* (BR, D) unnormalised output */
        float m[BR], l[BR];                                  /* running max and sum per row */
        /* dynamic: causal tiles late in T see more keys than early ones */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; bh++) {
            for (int64_t tile = 0; tile < ntiles; tile++) {
                const int64_t b = bh / H, h = bh % H;
                const float* qh = q + bh * T * D;                         /* (T, D) */
                const float* kh = k + (b * Hkv + h / rep) * S * D;          /* (S, D) */
                const float* vh = v + (b * Hkv + h / rep) * S * D;          /* (S, D) */
                const int64_t i0 = tile * BR, br = min64(BR, T - i0);
                const int64_t key_end = off + i0 + br;  /* keys the tile's last row can see */
                for (int64_t i = 0; i < br; i++) { m[i] = -INFINITY; l[i] = 0.0f; }
                memset(acc, 0, sizeof(float) * br * D);
                for (int64_t j0 = 0; j0 < key_end; j0 += BC) {
                    const int64_t bc = min64(BC, key_end - j0);
                    transpose_block(Kt, kh, j0, bc, D);
                    for (int64_t i = 0; i < br; i++) {
                        /* causal: row i sees keys < off + i0 + i + 1, i.e. jn of this block */
                        const int64_t jn = min64(bc, off + i0 + i + 1 - j0);
                        if (jn <= 0) continue;                  /* block entirely in its future */
                        float* s = sc + i * BC;
                        score_row(s, qh + (i0 + i) * D, Kt, jn, D, scale);
                        float* a = acc + i * D;
                        online_softmax_step(s, jn, &m[i], &l[i], a, D);   /* s becomes P_ij */
                        for (int64_t j = 0; j < jn; j++) {         /* acc_i += P_ij v_j */
                            const float p = s[j];
                            const float* vj = vh + (j0 + j) * D;
                            #pragma omp simd
                            for (int64_t d = 0; d < D; d++) a[d] += p * vj[d];
                        }
                    }
                }
                for (int64_t i = 0; i < br; i++) {
                    /* l >= 1: the row's max term contributes exp(0) (key 0 is always visible) */
                    const float inv_l = 1.0f / l[i];
                    float* o = out + (bh * T + i0 + i) * D;
                    #pragma omp simd
                    for (int64_t d = 0; d < D; d++) o[d] = acc[i * D + d] * inv_l;
                    lse[bh * T + i0 + i] = m[i] + logf(l[i]);
                }
            }
        }
        free(Kt);
        free(sc);
        free(acc);
    }
}

/* ------------------------------------------------------------------------------ backward */
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                        float scale) {
    const int64_t rep = H / Hkv;
    const int64_t off = S - T;
    #pragma omp parallel if (B * H * T * S * D >= (1 << 18))
    {
        float* Kt = xmalloc(sizeof(float) * D * BC);   /* (D, BC) keys of the block, transposed */
        float* Vt = xmalloc(sizeof(float) * D * BC);   /* (D, BC) values of the block, transposed */
        float* Di = xmalloc(sizeof(float) * T);        /* (T,) D_i = dout_i . out_i */
        float s[BC], dp[BC];                           /* one row's P and dS, over the block */
        #pragma omp for schedule(dynamic, 1)
        for (int64_t bk = 0; bk < B * Hkv; bk++) {     /* one (b, kv head) per iteration */
            const int64_t b = bk / Hkv, hk = bk % Hkv;
            const float* kh = k + bk * S * D;                  /* (S, D) */
            const float* vh = v + bk * S * D;                  /* (S, D) */
            float* dkh = dk + bk * S * D;                      /* (S, D), summed over rep heads */
            float* dvh = dv + bk * S * D;
            memset(dkh, 0, sizeof(float) * S * D);
            memset(dvh, 0, sizeof(float) * S * D);
            for (int64_t g = 0; g < rep; g++) {
                const int64_t bh = b * H + hk * rep + g;
                const float* qh = q + bh * T * D;              /* (T, D) */
                const float* doh = dout + bh * T * D;
                const float* oh = out + bh * T * D;
                const float* lh = lse + bh * T;                /* (T,) */
                float* dqh = dq + bh * T * D;
                memset(dqh, 0, sizeof(float) * T * D);
                for (int64_t i = 0; i < T; i++) {
                    float acc = 0.0f;
                    #pragma omp simd reduction(+ : acc)
                    for (int64_t d = 0; d < D; d++) acc += doh[i * D + d] * oh[i * D + d];
                    Di[i] = acc;
                }
                for (int64_t j0 = 0; j0 < S; j0 += BC) {
                    const int64_t bc = min64(BC, S - j0);
                    /* the first query row that sees key j0 is i = j0 - off */
                    const int64_t i_first = j0 - off > 0 ? j0 - off : 0;
                    if (i_first >= T) break;                   /* later keys are seen by no row */
                    transpose_block(Kt, kh, j0, bc, D);
                    transpose_block(Vt, vh, j0, bc, D);
                    for (int64_t i = i_first; i < T; i++) {
                        const int64_t jn = min64(bc, off + i + 1 - j0);   /* visible keys */
                        const float* qi = qh + i * D;
                        const float* doi = doh + i * D;
                        score_row(s, qi, Kt, jn, D, scale);
                        score_row(dp, doi, Vt, jn, D, 1.0f);          /* dP_ij = dout_i . v_j */
                        const float lse_i = lh[i], D_i = Di[i];
                        #pragma omp simd
                        for (int64_t j = 0; j < jn; j++) {
                            s[j] = fast_expf(s[j] - lse_i);            /* P_ij (s <= lse) */
                            dp[j] = s[j] * (dp[j] - D_i) * scale;      /* dS_ij, incl. d(s)/d(qk) */
                        }
                        float* dqi = dqh + i * D;
                        for (int64_t j = 0; j < jn; j++) {
                            const float p = s[j], ds = dp[j];
                            const float* kj = kh + (j0 + j) * D;
                            float* dvj = dvh + (j0 + j) * D;
                            float* dkj = dkh + (j0 + j) * D;
                            #pragma omp simd
                            for (int64_t d = 0; d < D; d++) {
                                dvj[d] += p * doi[d];                  /* dV = P^T dout */
                                dkj[d] += ds * qi[d];                  /* dK = dS^T Q */
                                dqi[d] += ds * kj[d];                  /* dQ = dS K */
                            }
                        }
                    }
                }
            }
        }
        free(Kt);
        free(Vt);
        free(Di);
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

/* o[0:D] = sum_j p[j] * v_j over the n cached values v (n, D), four keys per pass over o so o is
 * loaded and stored once per four keys instead of once per key. */
static void decode_values(float* o, const float* p, const float* v, int64_t n, int64_t D) {
    for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
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

/* The rep query heads qg (rep, D) that read one kv head against its first n cached keys kh and
 * values vh (n, D) -> og (rep, D). s: scratch of rep * n floats (the scores, then the probabilities). */
void attention_decode_head(float* og, const float* qg, const float* kh, const float* vh, int64_t rep,
                           int64_t n, int64_t D, float scale, float* s) {
    for (int64_t g = 0; g < rep; g++)
        decode_scores(s + g * n, qg + g * D, kh, n, D, scale);
    for (int64_t g = 0; g < rep; g++) {
        float* sg = s + g * n;
        float mx = sg[0];
        for (int64_t j = 1; j < n; j++) mx = sg[j] > mx ? sg[j] : mx;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) {
            sg[j] = fast_expf(sg[j] - mx);
            sum += sg[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++) sg[j] *= inv;
        decode_values(og + g * D, sg, vh, n, D);
    }
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
        float* s = xmalloc(sizeof(float) * rep * Smax);  /* (rep, n) scores, then P, of one kv head */
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
