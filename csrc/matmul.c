/* csrc/matmul.c -- out (M, N) = x (M, K) @ w (N, K)^T in float32.
 * Reference: minillm/kernels/reference.py:matmul.
 *
 * Two paths:
 *  - small M (decode GEMV and a few rows, M <= SMALL_M): every output is a dot product of a row
 *    of x with a row of w. The run time is reading w once from memory, so nothing is packed: a
 *    4 x 4 block of outputs (4 rows of x against 4 rows of w; 1 x 4 for a GEMV) is summed per
 *    pass over K, so each vector load feeds four FMAs, and threads split the rows of w.
 *  - otherwise the blocked GEMM of Goto & van de Geijn 2008 ("Anatomy of high-performance matrix
 *    multiplication") as organised in BLIS (Van Zee & van de Geijn 2015): five loops around a
 *    register-tiled micro-kernel.
 *
 *        for jc in N step NC:               B panel  w[jc:jc+NC, pc:pc+KC]  packed once, shared
 *          for pc in K step KC:             (lives in L3, read by every thread)
 *            pack B -> Bp                   NR-wide slivers, k-major: Bp[p][j] = w[j][p]
 *            parallel for ic in M step MC:  A block  x[ic:ic+MC, pc:pc+KC]  packed per thread (L2)
 *              pack A -> Ap                 MR-tall slivers, k-major: Ap[p][i] = x[i][p]
 *              for jr in NC step NR:        one B sliver (KC x NR) stays in L1/L2 ...
 *                for ir in MC step MR:      ... while the MR x KC A slivers stream past it
 *                  micro-kernel: C[MR x NR] += Ap sliver . Bp sliver  (rank-1 updates over p)
 *
 * The micro-kernel keeps its MR x NR block of C in registers: per step p it loads NR floats of B,
 * broadcasts MR floats of A and does MR * NR / width FMAs. AVX-512: 6 x 32 (12 zmm accumulators);
 * AVX2: 6 x 16 (12 ymm); plain C: 4 x 16 written so the compiler can vectorise it. Packing pads
 * slivers with zeros, so the kernel always runs full tiles; edge tiles go through a scratch tile.
 */
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "matmul.h"
#include "parts.inc"
#include "runs.inc"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define MR 6
#define NR 32
#elif defined(__AVX2__) && defined(__FMA__)
#define MR 6
#define NR 16
#else
#define MR 4
#define NR 16
#endif

#define KC 384            /* depth of one packed block. A B sliver is KC*NR*4 B = 48 KB, more than
                             L1 (32 KB), yet measured faster than 256 on Zen 4: K = 384 (the
                             d_model of the training model) then takes a single pass over out */
#define MC 144            /* rows of x per packed A block (a multiple of MR): MC*KC*4 B = 216 KB,
                             in L2 */
#define NC 3072           /* columns of w per packed B panel: KC*NC*4 B = 4.5 MB (L3) */
#define SMALL_M 16        /* M at or below this skips packing (dot-product tiles): measured faster
                             than the blocked path, whose packing of w dominates, up to M ~ 16 */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---------------------------------------------------------------------------- micro-kernels */
/* C[MR x NR] (row stride ldc) = (accumulate ? C : 0) + sum_p Ap[p][0:MR] (outer) Bp[p][0:NR]. */
#if defined(__AVX512F__)
static void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                         int accumulate) {
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(Bp + p * NR);        /* Bp is 64-byte aligned, NR = 32 */
        __m512 b1 = _mm512_load_ps(Bp + p * NR + 16);
        for (int i = 0; i < MR; i++) {                  /* unrolled by the compiler (MR const) */
            __m512 a = _mm512_set1_ps(Ap[p * MR + i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        float* Ci = C + i * ldc;
        if (accumulate) {
            c[i][0] = _mm512_add_ps(c[i][0], _mm512_loadu_ps(Ci));
            c[i][1] = _mm512_add_ps(c[i][1], _mm512_loadu_ps(Ci + 16));
        }
        _mm512_storeu_ps(Ci, c[i][0]);
        _mm512_storeu_ps(Ci + 16, c[i][1]);
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
static void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                         int accumulate) {
    __m256 c[MR][2];
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(Bp + p * NR);
        __m256 b1 = _mm256_load_ps(Bp + p * NR + 8);
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(Ap + p * MR + i);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        float* Ci = C + i * ldc;
        if (accumulate) {
            c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(Ci));
            c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(Ci + 8));
        }
        _mm256_storeu_ps(Ci, c[i][0]);
        _mm256_storeu_ps(Ci + 8, c[i][1]);
    }
}
#else
static void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                         int accumulate) {
    float c[MR][NR] = {{0}};
    for (int64_t p = 0; p < kc; p++)
        for (int i = 0; i < MR; i++) {
            const float a = Ap[p * MR + i];
            #pragma omp simd
            for (int j = 0; j < NR; j++) c[i][j] += a * Bp[p * NR + j];
        }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.0f) + c[i][j];
}
#endif

/* ---------------------------------------------------------------------------- packing */
/* Ap <- x[ic:ic+mc, pc:pc+kc] as ceil(mc/MR) slivers of kc x MR, rows past mc zero-filled. */
static void pack_a(float* Ap, const float* x, int64_t K, int64_t ic, int64_t mc, int64_t pc,
                   int64_t kc) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        float* dst = Ap + ir * kc;                              /* sliver ir / MR */
        for (int i = 0; i < MR; i++) {
            if (ir + i < mc) {
                const float* src = x + (ic + ir + i) * K + pc;  /* contiguous row of x */
                for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[p];
            } else {
                for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0.0f;
            }
        }
    }
}

/* Bp sliver for columns jc+jr .. jc+jr+NR-1 of out: Bp[p][j] = w[jc+jr+j][pc+p], zero past nc. */
static void pack_b_sliver(float* dst, const float* w, int64_t K, int64_t jc, int64_t jr,
                          int64_t nc, int64_t pc, int64_t kc) {
    for (int j = 0; j < NR; j++) {
        if (jr + j < nc) {
            const float* src = w + (jc + jr + j) * K + pc;      /* contiguous row of w */
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = src[p];
        } else {
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0.0f;
        }
    }
}

/* ---------------------------------------------------------------------------- small M */
/* out[m][n] = dot(x[m], w[n]), with no packing: for a handful of rows of x, copying w into slivers
 * would cost as much as the product itself. A 4 x 4 block of outputs is computed per pass over K
 * (4 rows of x against 4 rows of w), so each vector load of x or w feeds four FMAs; the 16 vector
 * sums are reduced horizontally once at the end. Threads split the rows of w. */
#if defined(__AVX512F__)
/* Always inlined and called with a constant MB (1 or 4), so the loops over i unroll and a GEMV
 * (MB = 1) does not pay for three unused rows. */
static inline __attribute__((always_inline)) void dot_tile(float* out, int64_t ldo, const float* x,
                                                           const float* w, const int MB,
                                                           int64_t mb, int64_t nb, int64_t K) {
    __m512 acc[4][4];
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    /* rows past mb / nb alias row 0: they are computed and then not stored, keeping loads legal */
    const float* xr[4], *wr[4];
    for (int i = 0; i < MB; i++) xr[i] = x + (i < mb ? i : 0) * K;
    for (int j = 0; j < 4; j++) wr[j] = w + (j < nb ? j : 0) * K;
    for (int64_t k = 0; k < K; k += 16) {
        /* the last step loads only the K % 16 remaining lanes: masked loads never touch memory
         * past the end of a row */
        const __mmask16 mask = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1u);
        __m512 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm512_maskz_loadu_ps(mask, wr[j] + k);
        for (int i = 0; i < MB; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, xr[i] + k);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    /* reduce with constant bounds first: indexing acc with the variable mb, nb would force
     * the 16 accumulators out of registers into memory for the whole loop above */
    float res[4][4];
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < 4; j++) res[i][j] = _mm512_reduce_add_ps(acc[i][j]);
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < nb; j++) out[i * ldo + j] = res[i][j];
}

/* One row of x against 4 rows of w far apart (w0 + j gap_rows K, j < 4): out[j * gap_rows]. The
 * operations of each row are dot_tile's at MB = 1 (a row's result is the same as there), with a
 * software prefetch 1 KB ahead in each row: four runs of rows read side by side stream ~1.1-1.5x
 * faster from DRAM than one (gemv_rows_runs). */
#define HAVE_RUNS4 1
static void dot_runs4(float* out, const float* x, const float* w0, int64_t gap_rows, int64_t K) {
    __m512 acc[4];
    const float* wr[4];
    for (int j = 0; j < 4; j++) {
        acc[j] = _mm512_setzero_ps();
        wr[j] = w0 + j * gap_rows * K;
    }
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 mask = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(mask, x + k);
        for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char*)(wr[j] + k) + 1024, _MM_HINT_T0);
            acc[j] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, wr[j] + k), acc[j]);
        }
    }
    for (int j = 0; j < 4; j++) out[j * gap_rows] = _mm512_reduce_add_ps(acc[j]);
}

static void dot_block(float* out, int64_t ldo, const float* x, const float* w, int64_t mb,
                      int64_t nb, int64_t K) {
    if (mb == 1) dot_tile(out, ldo, x, w, 1, 1, nb, K);
    else dot_tile(out, ldo, x, w, 4, mb, nb, K);
}
#elif defined(__AVX2__) && defined(__FMA__)
/* The AVX2 twin, 8 lanes wide. Sixteen ymm registers hold at most a 2 x 4 block of accumulators
 * with its loads (a 4 x 4 block would spill), so x is taken two rows at a time. A GEMV (MB = 1)
 * is memory-bound: what counts is how many rows of w stream at once. Eight rows per pass read
 * 8.2-10.1 GB/s on one core against 6.3-8.5 GB/s for four (6 and 12 rows: slower than 8; K 768
 * and 2048, weights from DRAM), so a GEMV takes blocks of 8 rows of w, and M = 2, 3 two 2 x 4
 * tiles per block. The K % 8 tail is read with a masked load (never past a row's end). */
#define SMALL_NB 8
static inline __attribute__((always_inline)) void dot_tile(float* out, int64_t ldo, const float* x,
                                                           const float* w, const int MB, const int NB,
                                                           int64_t mb, int64_t nb, int64_t K) {
    __m256 acc[2][8];                                   /* MB x NB <= 8 of them in registers */
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) acc[i][j] = _mm256_setzero_ps();
    const float* xr[2], *wr[8];
    for (int i = 0; i < MB; i++) xr[i] = x + (i < mb ? i : 0) * K;
    for (int j = 0; j < NB; j++) wr[j] = w + (j < nb ? j : 0) * K;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        for (int i = 0; i < MB; i++) {
            __m256 xv = _mm256_loadu_ps(xr[i] + k);
            for (int j = 0; j < NB; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wr[j] + k), acc[i][j]);
        }
    }
    if (k < K) {
        static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        const __m256i mask = _mm256_loadu_si256((const __m256i*)(lanes + 8 - (K - k)));
        for (int i = 0; i < MB; i++) {
            __m256 xv = _mm256_maskload_ps(xr[i] + k, mask);
            for (int j = 0; j < NB; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, _mm256_maskload_ps(wr[j] + k, mask), acc[i][j]);
        }
    }
    float res[2][8];
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < NB; j++) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            res[i][j] = _mm_cvtss_f32(s);
        }
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < nb; j++) out[i * ldo + j] = res[i][j];
}

/* out[0:mb, 0:nb] for mb rows of x (any number) and nb <= 8 rows of w. */
static void dot_block(float* out, int64_t ldo, const float* x, const float* w, int64_t mb,
                      int64_t nb, int64_t K) {
    if (mb == 1) {
        dot_tile(out, ldo, x, w, 1, 8, 1, nb, K);
        return;
    }
    for (int64_t j = 0; j < nb; j += 4)                /* the rows of w stay in L1 between passes */
        for (int64_t i = 0; i < mb; i += 2) {
            const int64_t mi = mb - i < 2 ? mb - i : 2, nj = nb - j < 4 ? nb - j : 4;
            if (mi == 1) dot_tile(out + i * ldo + j, ldo, x + i * K, w + j * K, 1, 4, 1, nj, K);
            else dot_tile(out + i * ldo + j, ldo, x + i * K, w + j * K, 2, 4, 2, nj, K);
        }
}
#else
static void dot_block(float* out, int64_t ldo, const float* x, const float* w, int64_t mb,
                      int64_t nb, int64_t K) {
    for (int64_t i = 0; i < mb; i++)
        for (int64_t j = 0; j < nb; j++) {
            const float *xi = x + i * K, *wj = w + j * K;
            float s = 0.0f;
            #pragma omp simd reduction(+ : s)   /* lets the compiler split the sum into lanes */
            for (int64_t k = 0; k < K; k++) s += xi[k] * wj[k];
            out[i * ldo + j] = s;
        }
}
#endif

#ifndef SMALL_NB
#define SMALL_NB 4        /* rows of w per block: what dot_block takes at once */
#endif

/* outs[i] (M, Ns[i]) = x (M, K) @ ws[i]^T for several weights that read the same x: the q, k, v
 * projections of a layer, or its gate and up projections. At decode time each of them is a short
 * GEMV, and a parallel region costs a wake-up of the sleeping second thread (~10 us on a quiet
 * machine, tens of us on a busy one); one region over the row blocks of all of them pays it once.
 * Blocks are numbered across the matrices in order, so the work split is that of one tall w.
 * matmul()'s small-M path is this with a group of one. */
static void matmul_group_small_m(float* const* outs, const float* x, const float* const* ws,
                                 const int64_t* Ns, int64_t count, int64_t M, int64_t K) {
    int64_t nblocks = 0, work = 0;
    for (int64_t i = 0; i < count; i++) {
        nblocks += (Ns[i] + SMALL_NB - 1) / SMALL_NB;
        work += M * Ns[i] * K;
    }
    /* Handed out in chunks of 4 blocks rather than one half per thread: when the machine is
     * shared and a thread starts late, the other takes over its blocks instead of idling at the
     * closing barrier. Each chunk is still a contiguous run of w (~100 KB at K = 768). */
    #pragma omp parallel for schedule(dynamic, 4) if (work >= (1 << 16))
    for (int64_t g = 0; g < nblocks; g++) {
        int64_t i = 0, b = g;                             /* block g is block b of matrix i */
        while (b >= (Ns[i] + SMALL_NB - 1) / SMALL_NB) {
            b -= (Ns[i] + SMALL_NB - 1) / SMALL_NB;
            i++;
        }
        const int64_t N = Ns[i], n = b * SMALL_NB, nb = min64(SMALL_NB, N - n);
        for (int64_t m = 0; m < M; m += 4)
            dot_block(outs[i] + m * N + n, N, x + m * K, ws[i] + n * K, min64(4, M - m), nb, K);
    }
}

/* out[0:n] = w[0:n] . x for the n rows of w (n, K): one thread's share of a GEMV (decode.c). */
void gemv_rows(float* out, const float* x, const float* w, int64_t n, int64_t K) {
    for (int64_t j = 0; j < n; j += SMALL_NB)
        dot_block(out + j, n, x, w + j * K, 1, min64(SMALL_NB, n - j), K);
}

/* One row of x against 4 runs of rows of w: rows n0 + j gap .. + count - 1 (j < 4), cut at row end;
 * out[r - n0] = w[r] . x. At decode (decode.c, M = 1) a task is a few rows of each quarter of w, so
 * each thread reads four long runs side by side (see qgemm.c rows_runs). Each row's result is
 * gemv_rows'. */
void gemv_rows_runs(float* out, const float* x, const float* w, int64_t n0, int64_t count, int64_t gap,
                    int64_t end, int64_t K) {
    int64_t len[4], common = run_lengths(n0, count, gap, end, len);
#if defined(HAVE_RUNS4)
    for (int64_t i = 0; i < common; i++) dot_runs4(out + i, x, w + (n0 + i) * K, gap, K);
#else
    common = 0;
#endif
    for (int j = 0; j < 4; j++)
        if (len[j] > common)
            gemv_rows(out + j * gap + common, x, w + (n0 + j * gap + common) * K, len[j] - common, K);
}

int32_t gemv_runs(void) {
#if defined(HAVE_RUNS4)
    return 1;
#else
    return 0;
#endif
}

/* The same for M rows of x, out with row stride ldo: a block of rows of w stays in cache while
 * every row of x passes over it (decode.c's multi-row step). Each output is the dot product
 * gemv_rows computes, so a row's result does not depend on the rows beside it. */
void gemm_rows(float* out, int64_t ldo, const float* x, int64_t M, const float* w, int64_t n, int64_t K) {
    for (int64_t j = 0; j < n; j += SMALL_NB)
        for (int64_t m = 0; m < M; m += 4)
            dot_block(out + m * ldo + j, ldo, x + m * K, w + j * K, min64(4, M - m), min64(SMALL_NB, n - j), K);
}

/* ---------------------------------------------------------------------------- blocked GEMM */
static void matmul_blocked(float* out, const float* x, const float* w, int64_t M, int64_t K,
                           int64_t N) {
    const int nthreads = omp_get_max_threads();
    /* Enough MC blocks for every thread: shrink the block (in multiples of MR) when M is small. */
    int64_t per_thread = (M + nthreads - 1) / nthreads;
    int64_t mc_max = min64(MC, (per_thread + MR - 1) / MR * MR);
    const int64_t nc_max = min64(NC, (N + NR - 1) / NR * NR);
    float* Bp = aligned_alloc(64, sizeof(float) * KC * nc_max);    /* KC*nc_max: multiple of 16 */
    if (Bp == NULL) abort();
    /* Tiny products are faster on one thread than paying the fork/join. */
    #pragma omp parallel if (M * N * K >= (1 << 18))
    {
        float* Ap = aligned_alloc(64, sizeof(float) * KC * mc_max);
        float Ct[MR * NR] __attribute__((aligned(64)));          /* scratch for edge tiles */
        if (Ap == NULL) abort();
        for (int64_t jc = 0; jc < N; jc += NC) {
            const int64_t nc = min64(NC, N - jc);
            for (int64_t pc = 0; pc < K; pc += KC) {
                const int64_t kc = min64(KC, K - pc);
                const int accumulate = pc > 0;                     /* later K blocks add to out */
                #pragma omp for schedule(static)
                for (int64_t jr = 0; jr < nc; jr += NR)
                    pack_b_sliver(Bp + jr * kc, w, K, jc, jr, nc, pc, kc);
                /* implicit barrier: Bp is complete before anyone reads it */
                #pragma omp for schedule(dynamic, 1)
                for (int64_t ic = 0; ic < M; ic += mc_max) {
                    const int64_t mc = min64(mc_max, M - ic);
                    pack_a(Ap, x, K, ic, mc, pc, kc);
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        const float* Bs = Bp + jr * kc;
                        for (int64_t ir = 0; ir < mc; ir += MR) {
                            const float* As = Ap + ir * kc;
                            float* C = out + (ic + ir) * N + jc + jr;
                            if (ir + MR <= mc && jr + NR <= nc) {
                                micro_kernel(kc, As, Bs, C, N, accumulate);
                            } else {                           /* edge: full tile into scratch */
                                const int64_t mr = min64(MR, mc - ir), nr = min64(NR, nc - jr);
                                micro_kernel(kc, As, Bs, Ct, NR, 0);
                                for (int64_t i = 0; i < mr; i++)
                                    for (int64_t j = 0; j < nr; j++)
                                        C[i * N + j] = (accumulate ? C[i * N + j] : 0.0f)
                                                       + Ct[i * NR + j];
                            }
                        }
                    }
                }
                /* implicit barrier: nobody repacks Bp while another thread still reads it */
            }
        }
        free(Ap);
    }
    free(Bp);
}

void matmul(float* out, const float* x, const float* w, int64_t M, int64_t K, int64_t N) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {                                   /* empty sum: out = 0, as np.matmul gives */
        memset(out, 0, sizeof(float) * (size_t)(M * N));
        return;
    }
    if (M <= SMALL_M) matmul_group_small_m(&out, x, &w, &N, 1, M, K);   /* a group of one */
    else matmul_blocked(out, x, w, M, K, N);
}

void matmul_group(float* const* outs, const float* x, const float* const* ws, const int64_t* Ns,
                  int64_t count, int64_t M, int64_t K) {
    if (M <= 0 || count <= 0) return;
    if (K <= 0 || M > SMALL_M) {              /* nothing to share: one product at a time */
        for (int64_t i = 0; i < count; i++) matmul(outs[i], x, ws[i], M, K, Ns[i]);
        return;
    }
    matmul_group_small_m(outs, x, ws, Ns, count, M, K);
}
