/* csrc/quant.c -- fused dequantize-matmul kernels, see quant.h.
   Reference: minillm/quant/linear.py (matmul_reference) and minillm/quant/ggml_quants.py (layouts).

   Two kinds of loop:
   - AVX2+FMA GEMV paths (M <= 4, decode) for every format: codes are widened to int32 in a register,
     converted to float and fused-multiply-added with x; scales are applied once per block, sub-block
     or group, and offsets (INT4 zero points, Q4_0's 8, Q4_K's mins) are folded out of the inner loop
     as s * (sum q x - z * sum x), with sum x per block computed once per call. AVX-512 hosts run the
     same 8-lane loops.
   - a generic path for every format: decode one block into a stack buffer (<= 256 floats, stays in
     L1) and dot it with up to 8 rows of x before moving on (M > 4, or no AVX2).
   Summation order differs from x @ W^T, so results agree within float32 rounding, not bitwise. */
#include <float.h>
#include "quant.h"
#include "parts.inc"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define QK8_0 32
#define QK4_0 32
#define QK_K 256
typedef uint16_t fp16_t;
typedef struct { fp16_t d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { fp16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { fp16_t d; fp16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; fp16_t d; } block_q6_K;
/* must equal the numpy dtypes in minillm/quant/formats.py (and ggml-common.h) */
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

enum { F_INT8 = 0, F_INT4 = 1, F_NF4 = 2, F_Q8_0 = 3, F_Q4_0 = 4, F_Q4_K = 5, F_Q6_K = 6, F_COUNT = 7 };
#define NF4_BLOCK 64
#define MB 8 /* rows of x per pass of the generic path */
#define PREFETCH_BYTES 2048 /* how far ahead the INT4 loops prefetch their codes (see row_int4) */
/* below this many weights a matrix is not worth waking a second thread for (fork/join costs
   microseconds, far more on a busy machine) */
#define PAR_MIN ((int64_t)1 << 18)

static const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982403373718f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

static inline float fp16_to_fp32(fp16_t h) {  /* IEEE half -> float, exact (subnormals included) */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) { bits = sign; }
        else { float f = (float)man * (1.0f / 16777216.0f); return (h & 0x8000) ? -f : f; } /* man * 2^-24 */
    } else if (exp == 31) { bits = sign | 0x7F800000u | (man << 13); }
    else { bits = sign | ((exp + 112) << 23) | (man << 13); }
    float f; memcpy(&f, &bits, 4); return f;
}

/* ------------------------------------------------------------------ layout of one format */
typedef struct {
    int64_t block;      /* weights per block (the last one of a row is shorter when block does not divide K: INT8 only) */
    int64_t row_bytes;  /* bytes of one row of w */
} layout_t;

static int64_t n_blocks(const layout_t* L, int64_t K) { return (K + L->block - 1) / L->block; }
static int64_t block_len(const layout_t* L, int64_t K, int64_t b) {
    return K - b * L->block < L->block ? K - b * L->block : L->block;
}

static int get_layout(int32_t fmt, int64_t K, int64_t group_size, layout_t* L) {
    switch (fmt) {
        case F_INT8: L->block = 64; L->row_bytes = K; return 0;   /* any K: a short last block */
        case F_INT4:
            if (group_size <= 0 || group_size % 32 || K % group_size) return -1;
            L->block = group_size; L->row_bytes = K / 2; return 0;
        case F_NF4: if (K % NF4_BLOCK) return -1; L->block = NF4_BLOCK; L->row_bytes = K / 2; return 0;
        case F_Q8_0: if (K % QK8_0) return -1; L->block = QK8_0; L->row_bytes = K / QK8_0 * sizeof(block_q8_0); return 0;
        case F_Q4_0: if (K % QK4_0) return -1; L->block = QK4_0; L->row_bytes = K / QK4_0 * sizeof(block_q4_0); return 0;
        case F_Q4_K: if (K % QK_K) return -1; L->block = QK_K; L->row_bytes = K / QK_K * sizeof(block_q4_K); return 0;
        case F_Q6_K: if (K % QK_K) return -1; L->block = QK_K; L->row_bytes = K / QK_K * sizeof(block_q6_K); return 0;
    }
    return -1;
}

/* weights per block sum of x that a format's factored-out offsets need: INT4 group_size, Q4_0 and Q4_K 32,
   others none (0) */
static int64_t sums_block(int32_t fmt, int64_t group_size) {
    return fmt == F_INT4 ? group_size : (fmt == F_Q4_0 || fmt == F_Q4_K) ? 32 : 0;
}

/* sums[i] = sum of x[i*sb .. (i+1)*sb) for the n*sb floats of x */
static void block_sums(float* sums, const float* x, int64_t n, int64_t sb) {
    for (int64_t i = 0; i < n; i++) {
        const float* xb = x + i * sb;
        float s = 0.0f;
        for (int64_t j = 0; j < sb; j++) s += xb[j];
        sums[i] = s;
    }
}

/* decode block b of row n into buf[0..block): the same float operations as linear.py's dequantize */
static void decode_block(int32_t fmt, const uint8_t* row, int64_t n, int64_t b, int64_t K, int64_t group_size,
                         const layout_t* L, const float* scale, const uint8_t* zero, float* buf) {
    switch (fmt) {
        case F_INT8: {
            const int8_t* q = (const int8_t*)row + b * L->block;
            float s = scale[n];
            for (int64_t i = 0; i < block_len(L, K, b); i++) buf[i] = (float)q[i] * s;
            break;
        }
        case F_INT4: case F_NF4: {
            const uint8_t* p = row + b * L->block / 2;
            for (int64_t r = 0; r < L->block / 32; r++)
                for (int j = 0; j < 16; j++) {
                    buf[32 * r + j] = (float)(p[16 * r + j] & 0xF);
                    buf[32 * r + j + 16] = (float)(p[16 * r + j] >> 4);
                }
            if (fmt == F_INT4) {
                float s = scale[n * (K / group_size) + b], z = (float)zero[n * (K / group_size) + b];
                for (int64_t i = 0; i < group_size; i++) buf[i] = (buf[i] - z) * s;
            } else {
                float a = scale[n * (K / NF4_BLOCK) + b];
                for (int64_t i = 0; i < NF4_BLOCK; i++) buf[i] = NF4_CODE[(int)buf[i]] * a;
            }
            break;
        }
        case F_Q8_0: {
            const block_q8_0* x = (const block_q8_0*)row + b;
            float d = fp16_to_fp32(x->d);
            for (int i = 0; i < QK8_0; i++) buf[i] = (float)x->qs[i] * d;
            break;
        }
        case F_Q4_0: {
            const block_q4_0* x = (const block_q4_0*)row + b;
            float d = fp16_to_fp32(x->d);
            for (int j = 0; j < 16; j++) {
                buf[j] = (float)((x->qs[j] & 0xF) - 8) * d;
                buf[j + 16] = (float)((x->qs[j] >> 4) - 8) * d;
            }
            break;
        }
        case F_Q4_K: {
            const block_q4_K* x = (const block_q4_K*)row + b;
            float d = fp16_to_fp32(x->d), dmin = fp16_to_fp32(x->dmin);
            const uint8_t* s = x->scales;
            for (int j = 0; j < 8; j++) {  /* get_scale_min_k4 */
                int sc, m;
                if (j < 4) { sc = s[j] & 63; m = s[j + 4] & 63; }
                else { sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4); m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4); }
                float d1 = d * (float)sc, m1 = dmin * (float)m;
                const uint8_t* q = x->qs + 32 * (j / 2);
                int shift = (j & 1) * 4;
                for (int l = 0; l < 32; l++) buf[32 * j + l] = d1 * (float)((q[l] >> shift) & 0xF) - m1;
            }
            break;
        }
        case F_Q6_K: {
            const block_q6_K* x = (const block_q6_K*)row + b;
            float d = fp16_to_fp32(x->d);
            for (int h = 0; h < 2; h++) {
                const uint8_t* ql = x->ql + 64 * h;
                const uint8_t* qh = x->qh + 32 * h;
                const int8_t* sc = x->scales + 8 * h;
                float* y = buf + 128 * h;
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * (float)sc[is] * (float)q1;
                    y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                    y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                    y[l + 96] = d * (float)sc[is + 6] * (float)q4;
                }
            }
            break;
        }
    }
}

static inline float dot(const float* a, const float* b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* generic fused path: one decoded block in L1, dotted with up to MB rows of x */
static void matmul_generic(int32_t fmt, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size,
                           const layout_t* L) {
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        float buf[QK_K];
        const uint8_t* row = w + n * L->row_bytes;
        for (int64_t m0 = 0; m0 < M; m0 += MB) {
            int64_t mb = M - m0 < MB ? M - m0 : MB;
            float acc[MB] = {0};
            for (int64_t b = 0; b < n_blocks(L, K); b++) {
                decode_block(fmt, row, n, b, K, group_size, L, scale, zero, buf);
                for (int64_t m = 0; m < mb; m++)
                    acc[m] += dot(buf, x + (m0 + m) * K + b * L->block, block_len(L, K, b));
            }
            for (int64_t m = 0; m < mb; m++) out[(m0 + m) * N + n] = acc[m];
        }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* ------------------------------------------------------------------ AVX2 + FMA GEMV paths (M <= 4)
   One output row n against one row of x, for every format; AVX-512 hosts run these too (Zen 4
   executes 512-bit arithmetic as two 256-bit halves, so 8-lane loops reach the same throughput, and
   one path is one thing to test). Two rules make them fast enough to be bound by memory:
   - independent accumulators. A single FMA chain waits 4 cycles (the FMA latency) per 8 weights;
     with 2-4 chains (and fresh partial sums per block) both FMA pipes stay busy.
   - offsets leave the inner loop. For W = s (q - z):  sum_k s (q_k - z) x_k = s (sum_k q_k x_k - z sum_k x_k),
     and sum_k x_k per block is computed once per call for all N rows (INT4 zero points, Q4_0's 8,
     Q4_K's mins), so the inner loop is only widen bytes -> convert to float -> FMA with x.
   Block scales are applied once per block (Q8_0/Q4_0/NF4), sub-block (Q4_K: 32, Q6_K: 16) or group
   (INT4), never per weight. Nibble runs unpack with `& 0xF` (weights j) and `>> 4` (weights j + 16). */
#define HAVE_SIMD_GEMV 1

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float half_to_float(fp16_t h) {  /* one vcvtph2ps with F16C; both are exact */
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return fp16_to_fp32(h);
#endif
}

/* 8 consecutive codes -> 8 int32 lanes (one vpmovzxbd / vpmovsxbd with a memory operand) */
static inline __m256i u8x8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)); }
static inline __m256 i8x8(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p))); }

/* sum_{j<32} q_j x_j over one run of 32 nibbles (16 bytes, run-of-32 order), two FMA chains */
static inline __m256 nibbles32_dot(const uint8_t* p, const float* x) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    __m256i v0 = u8x8(p), v1 = u8x8(p + 8);           /* bytes 0..7 and 8..15 */
    __m256 t0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), _mm256_loadu_ps(x));
    __m256 t1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low4)), _mm256_loadu_ps(x + 8));
    t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), _mm256_loadu_ps(x + 16), t0);
    t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), _mm256_loadu_ps(x + 24), t1);
    return _mm256_add_ps(t0, t1);
}

/* sum_{j<32} q_j x_j for 32 int8 codes, two FMA chains */
static inline __m256 int8x32_dot(const int8_t* q, const float* x) {
    __m256 t0 = _mm256_mul_ps(i8x8(q), _mm256_loadu_ps(x));
    __m256 t1 = _mm256_mul_ps(i8x8(q + 8), _mm256_loadu_ps(x + 8));
    t0 = _mm256_fmadd_ps(i8x8(q + 16), _mm256_loadu_ps(x + 16), t0);
    t1 = _mm256_fmadd_ps(i8x8(q + 24), _mm256_loadu_ps(x + 24), t1);
    return _mm256_add_ps(t0, t1);
}

/* INT8: sum_k q_k x_k (the per-row scale is applied by the caller); any K */
static float row_int8(const int8_t* q, const float* x, int64_t K) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        a0 = _mm256_fmadd_ps(i8x8(q + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(i8x8(q + k + 8), _mm256_loadu_ps(x + k + 8), a1);
        a2 = _mm256_fmadd_ps(i8x8(q + k + 16), _mm256_loadu_ps(x + k + 16), a2);
        a3 = _mm256_fmadd_ps(i8x8(q + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < K; k++) s += (float)q[k] * x[k];
    return s;
}

/* INT4, W = s_g (q - z_g):  sum_g s_g (sum_{k in g} q_k x_k - z_g sumx_g).
   The group body is a macro so that the default group of 128 gets a constant trip count (the
   compiler unrolls it: 3-5% faster); the zero-point term is one 8-wide dot over groups at the end,
   instead of a scalar multiply-add chain per group. Each group also prefetches the codes
   PREFETCH_BYTES ahead (the same place one row on at K = 4096): the hardware prefetchers alone left
   a 4096 x 4096 GEMV from DRAM 8-11% slower (0.80 vs 0.72 ms, 2 threads, interleaved runs). */
#define INT4_GROUP(GS)                                                                                     \
    {                                                                                                      \
        _mm_prefetch((const char*)(p + g * (GS) / 2 + PREFETCH_BYTES), _MM_HINT_T0);                       \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(); \
        for (int64_t k = g * (GS); k < (g + 1) * (GS); k += 32) {                                          \
            __m256i v0 = u8x8(p + k / 2), v1 = u8x8(p + k / 2 + 8);                                        \
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), _mm256_loadu_ps(x + k), a0);      \
            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low4)), _mm256_loadu_ps(x + k + 8), a1);  \
            a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), _mm256_loadu_ps(x + k + 16), a2);   \
            a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), _mm256_loadu_ps(x + k + 24), a3);   \
        }                                                                                                  \
        acc = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_set1_ps(s[g]), acc); \
    }

static float row_int4(const uint8_t* p, const float* s, const uint8_t* z, const float* x, const float* sumx,
                      int64_t K, int64_t group_size) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    const int64_t ng = K / group_size;
    __m256 acc = _mm256_setzero_ps();
    if (group_size == 128) {
        for (int64_t g = 0; g < ng; g++) INT4_GROUP(128)
    } else {
        for (int64_t g = 0; g < ng; g++) INT4_GROUP(group_size)
    }
    __m256 zacc = _mm256_setzero_ps();  /* sum_g s_g z_g sumx_g, 8 groups at a time */
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8)
        zacc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(s + g), _mm256_cvtepi32_ps(u8x8(z + g))),
                               _mm256_loadu_ps(sumx + g), zacc);
    float zterm = hsum256(zacc);
    for (; g < ng; g++) zterm += s[g] * (float)z[g] * sumx[g];
    return hsum256(acc) - zterm;
}
#undef INT4_GROUP

/* NF4, W = absmax_b NF4[q]: the 16-entry code book sits in two registers; vpermps looks up the
   low 3 bits of each code in both halves and bit 3 (moved to the sign bit) picks one. */
static inline __m256 nf4_lookup(__m256i q, __m256 lo_tab, __m256 hi_tab) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_tab, q), _mm256_permutevar8x32_ps(hi_tab, q),
                            _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
}

static float row_nf4(const uint8_t* p, const float* absmax, const float* x, int64_t K) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    const __m256 lo_tab = _mm256_loadu_ps(NF4_CODE), hi_tab = _mm256_loadu_ps(NF4_CODE + 8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < K / NF4_BLOCK; b++) {
        __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
        for (int64_t k = b * NF4_BLOCK; k < (b + 1) * NF4_BLOCK; k += 32) {
            __m256i v0 = u8x8(p + k / 2), v1 = u8x8(p + k / 2 + 8);
            t0 = _mm256_fmadd_ps(nf4_lookup(_mm256_and_si256(v0, low4), lo_tab, hi_tab), _mm256_loadu_ps(x + k), t0);
            t1 = _mm256_fmadd_ps(nf4_lookup(_mm256_and_si256(v1, low4), lo_tab, hi_tab), _mm256_loadu_ps(x + k + 8), t1);
            t0 = _mm256_fmadd_ps(nf4_lookup(_mm256_srli_epi32(v0, 4), lo_tab, hi_tab), _mm256_loadu_ps(x + k + 16), t0);
            t1 = _mm256_fmadd_ps(nf4_lookup(_mm256_srli_epi32(v1, 4), lo_tab, hi_tab), _mm256_loadu_ps(x + k + 24), t1);
        }
        if (b & 1) acc1 = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), _mm256_set1_ps(absmax[b]), acc1);
        else acc0 = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), _mm256_set1_ps(absmax[b]), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q8_0, W = d_b q: sum_b d_b (sum q x); two blocks per step into two accumulators */
static float row_q8_0(const block_q8_0* blk, const float* x, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        acc0 = _mm256_fmadd_ps(int8x32_dot(blk[b].qs, x + 32 * b), _mm256_set1_ps(half_to_float(blk[b].d)), acc0);
        acc1 = _mm256_fmadd_ps(int8x32_dot(blk[b + 1].qs, x + 32 * b + 32), _mm256_set1_ps(half_to_float(blk[b + 1].d)), acc1);
    }
    if (b < nb) acc0 = _mm256_fmadd_ps(int8x32_dot(blk[b].qs, x + 32 * b), _mm256_set1_ps(half_to_float(blk[b].d)), acc0);
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q4_0, W = d_b (q - 8):  sum_b d_b (sum q x - 8 sumx_b) */
static float row_q4_0(const block_q4_0* blk, const float* x, const float* sumx, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float off0 = 0.0f, off1 = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const float d0 = half_to_float(blk[b].d), d1 = half_to_float(blk[b + 1].d);
        acc0 = _mm256_fmadd_ps(nibbles32_dot(blk[b].qs, x + 32 * b), _mm256_set1_ps(d0), acc0);
        acc1 = _mm256_fmadd_ps(nibbles32_dot(blk[b + 1].qs, x + 32 * b + 32), _mm256_set1_ps(d1), acc1);
        off0 += d0 * sumx[b];
        off1 += d1 * sumx[b + 1];
    }
    if (b < nb) {
        const float d0 = half_to_float(blk[b].d);
        acc0 = _mm256_fmadd_ps(nibbles32_dot(blk[b].qs, x + 32 * b), _mm256_set1_ps(d0), acc0);
        off0 += d0 * sumx[b];
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - 8.0f * (off0 + off1);
}

/* Q4_K, W = d sc_j q - dmin m_j over sub-blocks j of 32:
   sum_j d sc_j (sum q x) - sum_j dmin m_j sumx_j, the second term one 8-lane FMA per super-block.
   The eight 6-bit (sc, m) pairs unpack four at a time from 32-bit words (get_scale_min_k4 in ggml:
   j < 4 keep the low 6 bits of bytes 0..7; j >= 4 join a nibble of bytes 8..11 with the top 2 bits
   of bytes 0..7). */
static inline void q4_K_scales_mins(const uint8_t* scales, uint32_t sc[2], uint32_t mn[2]) {
    uint32_t w[3];
    memcpy(w, scales, 12);
    sc[0] = w[0] & 0x3F3F3F3Fu;                                      /* scales 0..3, mins 0..3 */
    mn[0] = w[1] & 0x3F3F3F3Fu;
    sc[1] = (w[2] & 0x0F0F0F0Fu) | (((w[0] >> 6) & 0x03030303u) << 4);        /* 4..7 */
    mn[1] = ((w[2] >> 4) & 0x0F0F0F0Fu) | (((w[1] >> 6) & 0x03030303u) << 4);
}

static float row_q4_K(const block_q4_K* blk, const float* x, const float* sumx32, int64_t nb) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    float dsc[8];
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_K* B = blk + b;
        uint32_t sc[2], mn[2];
        q4_K_scales_mins(B->scales, sc, mn);
        _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_cvtepi32_ps(u8x8((const uint8_t*)sc)), _mm256_set1_ps(half_to_float(B->d))));
        accm = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(u8x8((const uint8_t*)mn)), _mm256_set1_ps(half_to_float(B->dmin))),
                               _mm256_loadu_ps(sumx32 + 8 * b), accm);
        const float* xb = x + QK_K * b;
        for (int i = 0; i < 4; i++) {  /* 32 bytes: low nibbles = sub-block 2i, high = sub-block 2i + 1 */
            const uint8_t* q = B->qs + 32 * i;
            const float* xl = xb + 64 * i;
            __m256i v0 = u8x8(q), v1 = u8x8(q + 8), v2 = u8x8(q + 16), v3 = u8x8(q + 24);
            __m256 l0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), _mm256_loadu_ps(xl));
            __m256 l1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low4)), _mm256_loadu_ps(xl + 8));
            __m256 h0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), _mm256_loadu_ps(xl + 32));
            __m256 h1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), _mm256_loadu_ps(xl + 40));
            l0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v2, low4)), _mm256_loadu_ps(xl + 16), l0);
            l1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v3, low4)), _mm256_loadu_ps(xl + 24), l1);
            h0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v2, 4)), _mm256_loadu_ps(xl + 48), h0);
            h1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v3, 4)), _mm256_loadu_ps(xl + 56), h1);
            acc0 = _mm256_fmadd_ps(_mm256_add_ps(l0, l1), _mm256_broadcast_ss(dsc + 2 * i), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_add_ps(h0, h1), _mm256_broadcast_ss(dsc + 2 * i + 1), acc1);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - hsum256(accm);
}

/* Q6_K, W = d sc_j (q - 32) over sub-blocks j of 16. The 6-bit codes are assembled 32 at a time
   with byte operations (low 4 bits from ql, high 2 from qh), re-centred to int8 in [-32, 31] into
   an L1 buffer, then widened 8 at a time like Q8_0. */
static float row_q6_K(const block_q6_K* blk, const float* x, int64_t nb) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), c32 = _mm256_set1_epi8(32);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int8_t q[QK_K];
    float dsc[16];
    for (int64_t b = 0; b < nb; b++) {
        const block_q6_K* B = blk + b;
        for (int h = 0; h < 2; h++) {  /* 128 weights: ql[64h..64h+64), qh[32h..32h+32) */
            __m256i A = _mm256_loadu_si256((const __m256i*)(B->ql + 64 * h));
            __m256i C = _mm256_loadu_si256((const __m256i*)(B->ql + 64 * h + 32));
            __m256i H = _mm256_loadu_si256((const __m256i*)(B->qh + 32 * h));
            /* weight l: ql[l] low | qh bits 0-1; l+32: ql[l+32] low | bits 2-3; l+64: ql[l] high | bits 4-5;
               l+96: ql[l+32] high | bits 6-7 (16-bit shifts are safe: the masks drop bits crossing bytes) */
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(A, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(C, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m0f), _mm256_and_si256(H, m30));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(C, 4), m0f),
                                         _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            _mm256_storeu_si256((__m256i*)(q + 128 * h), _mm256_sub_epi8(q1, c32));
            _mm256_storeu_si256((__m256i*)(q + 128 * h + 32), _mm256_sub_epi8(q2, c32));
            _mm256_storeu_si256((__m256i*)(q + 128 * h + 64), _mm256_sub_epi8(q3, c32));
            _mm256_storeu_si256((__m256i*)(q + 128 * h + 96), _mm256_sub_epi8(q4, c32));
        }
        const __m256 d = _mm256_set1_ps(half_to_float(B->d));
        _mm256_storeu_ps(dsc, _mm256_mul_ps(i8x8(B->scales), d));
        _mm256_storeu_ps(dsc + 8, _mm256_mul_ps(i8x8(B->scales + 8), d));
        const float* xb = x + QK_K * b;
        for (int j = 0; j < 16; j++) {
            __m256 t = _mm256_mul_ps(i8x8(q + 16 * j), _mm256_loadu_ps(xb + 16 * j));
            t = _mm256_fmadd_ps(i8x8(q + 16 * j + 8), _mm256_loadu_ps(xb + 16 * j + 8), t);
            acc[j & 3] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(dsc + j), acc[j & 3]);
        }
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* out[m, n] = x[m] . W[n] for one row n: dispatch on the format (once per row, not per weight) */
static float row_dot(int32_t fmt, const uint8_t* row, int64_t n, const float* xm, const float* sums_m,
                     int64_t K, int64_t group_size, const float* scale, const uint8_t* zero) {
    switch (fmt) {
        case F_INT8: return scale[n] * row_int8((const int8_t*)row, xm, K);
        case F_INT4: {
            const int64_t ng = K / group_size;  /* scales and zeros per row */
            return row_int4(row, scale + n * ng, zero + n * ng, xm, sums_m, K, group_size);
        }
        case F_NF4: return row_nf4(row, scale + n * (K / NF4_BLOCK), xm, K);
        case F_Q8_0: return row_q8_0((const block_q8_0*)row, xm, K / QK8_0);
        case F_Q4_0: return row_q4_0((const block_q4_0*)row, xm, sums_m, K / QK4_0);
        case F_Q4_K: return row_q4_K((const block_q4_K*)row, xm, sums_m, K / QK_K);
        case F_Q6_K: return row_q6_K((const block_q6_K*)row, xm, K / QK_K);
    }
    return 0.0f;
}

#define SUMS_ON_STACK 1024
static int32_t matmul_simd(int32_t fmt, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size,
                           const layout_t* L) {
    /* sumx (M, K / sb): the per-block sums of x that the factored-out offsets need, once per call
       (row m, block b of x (M, K) is x + (m * K/sb + b) * sb) */
    const int64_t sb = sums_block(fmt, group_size);
    const int64_t nsums = sb ? M * (K / sb) : 0;
    float stack_sums[SUMS_ON_STACK];
    float* sums = nsums <= SUMS_ON_STACK ? stack_sums : (float*)malloc((size_t)nsums * sizeof(float));
    if (!sums) return -1;
    block_sums(sums, x, nsums, sb);
    const int64_t nspr = sb ? K / sb : 0;  /* sums per row of x */
    /* chunks of 64 rows handed out on demand: on a shared machine a thread that loses its core for a
       scheduler tick no longer holds up the whole call (a static split waits for the slower half).
       Chunks of 16 rows (8 KB of INT4 codes at K = 4096) cut each thread's stream too short for
       the hardware prefetcher: INT4 4096 x 4096 took 0.97-1.01 ms against 0.77-0.88 ms with 64. */
#pragma omp parallel for schedule(dynamic, 64) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t* row = w + n * L->row_bytes;
        for (int64_t m = 0; m < M; m++)
            out[m * N + n] = row_dot(fmt, row, n, x + m * K, sums + m * nspr, K, group_size, scale, zero);
    }
    if (sums != stack_sums) free(sums);
    return 0;
}
#endif

int32_t quant_matmul(int32_t fmt, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                     const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    layout_t L;
    if (M < 0 || K <= 0 || N < 0 || get_layout(fmt, K, group_size, &L)) return -1;
    if (M == 0 || N == 0) return 0;
#ifdef HAVE_SIMD_GEMV
    /* decode / tiny batches: re-reading a row from L1 per x row beats buffering decoded blocks */
    if (M <= 4) return matmul_simd(fmt, out, x, M, K, N, w, scale, zero, group_size, &L);
#endif
    matmul_generic(fmt, out, x, M, K, N, w, scale, zero, group_size, &L);
    return 0;
}

/* ------------------------------------------------------------------ one thread's rows of a GEMV
   For decode.c (see parts.inc): the same arithmetic as quant_matmul with M = 1, serial. */
int64_t quant_x_sums(int32_t fmt, const float* x, int64_t K, int64_t group_size, float* sums) {
    const int64_t sb = sums_block(fmt, group_size);   /* (the generic path of quant_gemv_rows ignores them) */
    if (sb) block_sums(sums, x, K / sb, sb);
    return sb ? K / sb : 0;
}

void quant_gemv_rows(int32_t fmt, float* out, const float* x, const float* sums, int64_t n0, int64_t n,
                     int64_t K, const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    layout_t L;
    if (get_layout(fmt, K, group_size, &L)) return;   /* validated by the caller: never taken */
    for (int64_t n_ = n0; n_ < n0 + n; n_++) {
        const uint8_t* row = w + n_ * L.row_bytes;
#ifdef HAVE_SIMD_GEMV
        out[n_ - n0] = row_dot(fmt, row, n_, x, sums, K, group_size, scale, zero);
#else
        float buf[QK_K], acc = 0.0f;            /* matmul_generic's order for one row of x */
        (void)sums;
        for (int64_t b = 0; b < n_blocks(&L, K); b++) {
            decode_block(fmt, row, n_, b, K, group_size, &L, scale, zero, buf);
            acc += dot(buf, x + b * L.block, block_len(&L, K, b));
        }
        out[n_ - n0] = acc;
#endif
    }
}

int32_t quant_dequant_rows(int32_t fmt, float* out, int64_t n0, int64_t n1, int64_t K,
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    layout_t L;
    if (n0 < 0 || n1 < n0 || K <= 0 || get_layout(fmt, K, group_size, &L)) return -1;
#pragma omp parallel for schedule(static) if ((n1 - n0) * K >= PAR_MIN)
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t* row = w + n * L.row_bytes;
        for (int64_t b = 0; b < n_blocks(&L, K); b++)
            decode_block(fmt, row, n, b, K, group_size, &L, scale, zero, out + (n - n0) * K + b * L.block);
    }
    return 0;
}

/* ------------------------------------------------------------------ int8 activations
   Symmetric int8 quantization of n inputs of x: d = absmax / 127, q_i = round(x_i / d) in [-127, 127]
   (all 0 when the inputs are), so x ~= d * q. Returns d. The three int8-activation kernels below
   quantize their blocks (a whole row, an INT4 group, 32 inputs) with it.
   Reference: minillm/quant/linear.py:quantize_x_int8. */
static float quantize_x_int8(int8_t* q, const float* x, int64_t n) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {   /* not fmaxf: it drops NaN, and NaN in must give NaN out */
        const float a = fabsf(x[i]);
        amax = (a > amax || a != a) ? a : amax;
    }
    const float d = amax / 127.0f;
    if (!(d > 0.0f && d <= FLT_MAX)) {  /* all zero, or NaN/inf in the block: codes 0, d carries it */
        memset(q, 0, (size_t)n);       /* (x * 0 would be NaN, and (int)NaN is undefined) */
        return d;
    }
    const float id = 1.0f / d;
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)(int)nearbyintf(x[i] * id);
    return d;
}

/* ------------------------------------------------------------------ INT8 x INT8 with VNNI */
int32_t quant_matmul_int8_vnni(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                               const int8_t* w, const float* scale) {
    if (M < 0 || N < 0 || K <= 0 || K % 64) return -1;
    uint8_t* xq = (uint8_t*)malloc((size_t)(M * K));
    float* sx = (float*)malloc((size_t)(M > 0 ? M : 1) * sizeof(float));
    if (!xq || !sx) { free(xq); free(sx); return -1; }
    for (int64_t m = 0; m < M; m++) {  /* x -> int8 per row, stored +128 as uint8 for vpdpbusd */
        sx[m] = quantize_x_int8((int8_t*)(xq + m * K), x + m * K, K);
        for (int64_t k = 0; k < K; k++) xq[m * K + k] = (uint8_t)((int)((int8_t*)xq)[m * K + k] + 128);
    }
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const int8_t* q = w + n * K;
        for (int64_t m = 0; m < M; m++) {
            const uint8_t* a = xq + m * K;
            int64_t dot_u = 0, sum_w = 0;  /* sum (xq + 128) q  and  sum q */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
            __m512i acc = _mm512_setzero_si512(), accw = _mm512_setzero_si512();
            const __m512i c128 = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
            for (int64_t k = 0; k < K; k += 64) {
                __m512i wv = _mm512_loadu_si512((const void*)(q + k));
                acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512((const void*)(a + k)), wv);
                accw = _mm512_dpbusd_epi32(accw, ones, wv);
            }
            (void)c128;
            dot_u = _mm512_reduce_add_epi32(acc);
            sum_w = _mm512_reduce_add_epi32(accw);
#else
            for (int64_t k = 0; k < K; k++) { dot_u += (int64_t)a[k] * q[k]; sum_w += q[k]; }
#endif
            out[m * N + n] = (float)(dot_u - 128 * sum_w) * sx[m] * scale[n];
        }
    }
    free(xq);
    free(sx);
    return 0;
}

/* ------------------------------------------------------------------ INT4 x INT8 activations */
int32_t quant_matmul_int4_q8(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                             const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    if (M < 0 || N < 0 || K <= 0 || group_size <= 0 || group_size % 64 || K % group_size) return -1;
    const int64_t ng = K / group_size;
    int8_t* xq = (int8_t*)malloc((size_t)(M * K));
    float* dx = (float*)malloc((size_t)(M * ng + 1) * sizeof(float));
    int32_t* sx = (int32_t*)malloc((size_t)(M * ng + 1) * sizeof(int32_t));
    if (!xq || !dx || !sx) { free(xq); free(dx); free(sx); return -1; }
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < ng; g++) {
            int8_t* dst = xq + m * K + g * group_size;
            dx[m * ng + g] = quantize_x_int8(dst, x + m * K + g * group_size, group_size);
            int32_t s = 0;
            for (int64_t i = 0; i < group_size; i++) s += dst[i];
            sx[m * ng + g] = s;
            /* reorder to the way the nibbles unpack: per 64 inputs, [0..16) [32..48) then [16..32) [48..64) */
            for (int64_t c = 0; c < group_size; c += 64)
                for (int j = 0; j < 16; j++) {
                    const int8_t t = dst[c + 16 + j];
                    dst[c + 16 + j] = dst[c + 32 + j];
                    dst[c + 32 + j] = t;
                }
        }
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t* p = w + n * (K / 2);
        const float* s = scale + n * ng;
        const uint8_t* z = zero + n * ng;
        for (int64_t m = 0; m < M; m++) {
            const int8_t* a = xq + m * K;
            float total = 0.0f;
#if defined(__AVX2__)
            const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
            __m256 accf = _mm256_setzero_ps();
            for (int64_t g = 0; g < ng; g++) {
                __m256i acc = _mm256_setzero_si256();
                _mm_prefetch((const char*)(p + g * group_size / 2 + PREFETCH_BYTES), _MM_HINT_T0);
                for (int64_t c = g * group_size; c < (g + 1) * group_size; c += 64) {
                    __m256i b = _mm256_loadu_si256((const __m256i*)(p + c / 2));
                    __m256i lo = _mm256_and_si256(b, low4);
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
                    __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i*)(a + c))),
                                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i*)(a + c + 32))));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(t, ones));
                }
                const float f = s[g] * dx[m * ng + g];
                accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(f), accf);
                total -= f * (float)z[g] * (float)sx[m * ng + g];
            }
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(accf), _mm256_extractf128_ps(accf, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            total += _mm_cvtss_f32(h);
#else
            for (int64_t g = 0; g < ng; g++) {
                int32_t dot = 0;
                for (int64_t c = g * group_size; c < (g + 1) * group_size; c += 64)
                    for (int j = 0; j < 32; j++) {
                        dot += (p[c / 2 + j] & 0xF) * a[c + j] + (p[c / 2 + j] >> 4) * a[c + 32 + j];
                    }
                const float f = s[g] * dx[m * ng + g];
                total += f * ((float)dot - (float)z[g] * (float)sx[m * ng + g]);
            }
#endif
            out[m * N + n] = total;
        }
    }
    free(xq); free(dx); free(sx);
    return 0;
}
