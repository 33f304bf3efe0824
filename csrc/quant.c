/* csrc/quant.c -- fused dequantize-matmul kernels, see quant.h.
   Reference: minillm/quant/linear.py (matmul_reference) and minillm/quant/ggml_quants.py (layouts).

   Two kinds of loop:
   - AVX-512 (or AVX2+FMA) paths for INT8, INT4, Q8_0 and Q4_0 (the decode formats): codes are widened to int32 in a
     register, converted to float and fused-multiply-added with x; per-block scales are applied once
     per block (Q8_0/Q4_0) or once per group (INT4, whose zero point is folded out as
     s * (sum q x - z * sum x), with sum x precomputed per group).
   - a generic path for every format: decode one block into a stack buffer (<= 256 floats, stays in
     L1) and dot it with up to 8 rows of x before moving on. Q4_K, Q6_K and NF4 use it always.
   Summation order differs from x @ W^T, so results agree within float32 rounding, not bitwise. */
#include "quant.h"

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
    int64_t block;      /* weights per block */
    int64_t row_bytes;  /* bytes of one row of w */
} layout_t;

static int get_layout(int32_t fmt, int64_t K, int64_t G, layout_t* L) {
    switch (fmt) {
        case F_INT8: L->block = K % 64 == 0 ? 64 : K; L->row_bytes = K; return 0;
        case F_INT4: if (G <= 0 || G % 32 || K % G) return -1; L->block = G; L->row_bytes = K / 2; return 0;
        case F_NF4: if (K % NF4_BLOCK) return -1; L->block = NF4_BLOCK; L->row_bytes = K / 2; return 0;
        case F_Q8_0: if (K % QK8_0) return -1; L->block = QK8_0; L->row_bytes = K / QK8_0 * sizeof(block_q8_0); return 0;
        case F_Q4_0: if (K % QK4_0) return -1; L->block = QK4_0; L->row_bytes = K / QK4_0 * sizeof(block_q4_0); return 0;
        case F_Q4_K: if (K % QK_K) return -1; L->block = QK_K; L->row_bytes = K / QK_K * sizeof(block_q4_K); return 0;
        case F_Q6_K: if (K % QK_K) return -1; L->block = QK_K; L->row_bytes = K / QK_K * sizeof(block_q6_K); return 0;
    }
    return -1;
}

/* decode block b of row n into buf[0..block): the same float operations as linear.py's dequantize */
static void decode_block(int32_t fmt, const uint8_t* row, int64_t n, int64_t b, int64_t K, int64_t G,
                         const layout_t* L, const float* scale, const uint8_t* zero, float* buf) {
    switch (fmt) {
        case F_INT8: {
            const int8_t* q = (const int8_t*)row + b * L->block;
            float s = scale[n];
            for (int64_t i = 0; i < L->block; i++) buf[i] = (float)q[i] * s;
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
                float s = scale[n * (K / G) + b], z = (float)zero[n * (K / G) + b];
                for (int64_t i = 0; i < G; i++) buf[i] = (buf[i] - z) * s;
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
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t G,
                           const layout_t* L) {
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        float buf[QK_K];
        const uint8_t* row = w + n * L->row_bytes;
        for (int64_t m0 = 0; m0 < M; m0 += MB) {
            int64_t mb = M - m0 < MB ? M - m0 : MB;
            float acc[MB] = {0};
            for (int64_t b = 0; b < K / L->block; b++) {
                decode_block(fmt, row, n, b, K, G, L, scale, zero, buf);
                for (int64_t m = 0; m < mb; m++) acc[m] += dot(buf, x + (m0 + m) * K + b * L->block, L->block);
            }
            for (int64_t m = 0; m < mb; m++) out[(m0 + m) * N + n] = acc[m];
        }
    }
}

#if defined(__AVX512F__)
/* ------------------------------------------------------------------ AVX-512 decode-format paths */
#define HAVE_SIMD_GEMV 1
static inline __m512 widen_i8(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p))); }

static void matmul_int8_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                               const int8_t* w, const float* scale) {
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const int8_t* q = w + n * K;
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            int64_t k = 0;
            for (; k + 32 <= K; k += 32) {
                a0 = _mm512_fmadd_ps(widen_i8(q + k), _mm512_loadu_ps(xm + k), a0);
                a1 = _mm512_fmadd_ps(widen_i8(q + k + 16), _mm512_loadu_ps(xm + k + 16), a1);
            }
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
            for (; k < K; k++) s += (float)q[k] * xm[k];
            out[m * N + n] = s * scale[n];
        }
    }
}

static void matmul_int4_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                               const uint8_t* w, const float* scale, const uint8_t* zero, int64_t G,
                               const float* sumx) {
    const int64_t ng = K / G;
    const __m512i low4 = _mm512_set1_epi32(0xF);
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t* p = w + n * (K / 2);
        const float* s = scale + n * ng;
        const uint8_t* z = zero + n * ng;
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m512 acc = _mm512_setzero_ps();
            float zterm = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                __m512 ga = _mm512_setzero_ps(), gb = _mm512_setzero_ps();
                for (int64_t r = 0; r < G / 32; r++) {
                    const int64_t k = g * G + 32 * r;
                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p + k / 2)));
                    __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, low4));
                    __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
                    ga = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xm + k), ga);
                    gb = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xm + k + 16), gb);
                }
                acc = _mm512_fmadd_ps(_mm512_add_ps(ga, gb), _mm512_set1_ps(s[g]), acc);
                zterm += s[g] * (float)z[g] * sumx[m * ng + g];
            }
            out[m * N + n] = _mm512_reduce_add_ps(acc) - zterm;  /* sum s (q - z) x */
        }
    }
}

static void matmul_q8_0_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    const int64_t nb = K / QK8_0;
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const block_q8_0* blk = (const block_q8_0*)(w + n * nb * sizeof(block_q8_0));
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                __m512 t = _mm512_mul_ps(widen_i8(blk[b].qs), _mm512_loadu_ps(xm + 32 * b));
                t = _mm512_fmadd_ps(widen_i8(blk[b].qs + 16), _mm512_loadu_ps(xm + 32 * b + 16), t);
                acc = _mm512_fmadd_ps(t, _mm512_set1_ps(fp16_to_fp32(blk[b].d)), acc);
            }
            out[m * N + n] = _mm512_reduce_add_ps(acc);
        }
    }
}

static void matmul_q4_0_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    const int64_t nb = K / QK4_0;
    const __m512i low4 = _mm512_set1_epi32(0xF), eight = _mm512_set1_epi32(8);
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const block_q4_0* blk = (const block_q4_0*)(w + n * nb * sizeof(block_q4_0));
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)blk[b].qs));
                __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, low4), eight));
                __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight));
                __m512 t = _mm512_mul_ps(lo, _mm512_loadu_ps(xm + 32 * b));
                t = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xm + 32 * b + 16), t);
                acc = _mm512_fmadd_ps(t, _mm512_set1_ps(fp16_to_fp32(blk[b].d)), acc);
            }
            out[m * N + n] = _mm512_reduce_add_ps(acc);
        }
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
/* ------------------------------------------------------------------ AVX2 + FMA decode-format paths
   The same loops 8 lanes wide, for CPUs without AVX-512. */
#define HAVE_SIMD_GEMV 1
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline __m256 widen8_i8(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p))); }

/* 32 packed weights (16 bytes, run-of-32 order) dotted with x[0..32): 4 vectors of 8 codes */
static inline __m256 dot_nibbles32(const uint8_t* p, const float* x, __m256i bias, __m256 acc) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    __m128i b = _mm_loadu_si128((const __m128i*)p);
    __m256i v0 = _mm256_cvtepu8_epi32(b), v1 = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v0, low4), bias)), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v1, low4), bias)), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v0, 4), bias)), _mm256_loadu_ps(x + 16), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v1, 4), bias)), _mm256_loadu_ps(x + 24), acc);
    return acc;
}

static void matmul_int8_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                             const int8_t* w, const float* scale) {
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const int8_t* q = w + n * K;
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                a0 = _mm256_fmadd_ps(widen8_i8(q + k), _mm256_loadu_ps(xm + k), a0);
                a1 = _mm256_fmadd_ps(widen8_i8(q + k + 8), _mm256_loadu_ps(xm + k + 8), a1);
            }
            float s = hsum256(_mm256_add_ps(a0, a1));
            for (; k < K; k++) s += (float)q[k] * xm[k];
            out[m * N + n] = s * scale[n];
        }
    }
}

static void matmul_int4_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                             const uint8_t* w, const float* scale, const uint8_t* zero, int64_t G,
                             const float* sumx) {
    const int64_t ng = K / G;
    const __m256i nobias = _mm256_setzero_si256();
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t* p = w + n * (K / 2);
        const float* s = scale + n * ng;
        const uint8_t* z = zero + n * ng;
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m256 acc = _mm256_setzero_ps();
            float zterm = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                __m256 ga = _mm256_setzero_ps();
                for (int64_t r = 0; r < G / 32; r++) {
                    const int64_t k = g * G + 32 * r;
                    ga = dot_nibbles32(p + k / 2, xm + k, nobias, ga);
                }
                acc = _mm256_fmadd_ps(ga, _mm256_set1_ps(s[g]), acc);
                zterm += s[g] * (float)z[g] * sumx[m * ng + g];
            }
            out[m * N + n] = hsum256(acc) - zterm;  /* sum s (q - z) x */
        }
    }
}

static void matmul_q8_0_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    const int64_t nb = K / QK8_0;
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const block_q8_0* blk = (const block_q8_0*)(w + n * nb * sizeof(block_q8_0));
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m256 acc = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const float* xb = xm + 32 * b;
                __m256 t = _mm256_mul_ps(widen8_i8(blk[b].qs), _mm256_loadu_ps(xb));
                t = _mm256_fmadd_ps(widen8_i8(blk[b].qs + 8), _mm256_loadu_ps(xb + 8), t);
                t = _mm256_fmadd_ps(widen8_i8(blk[b].qs + 16), _mm256_loadu_ps(xb + 16), t);
                t = _mm256_fmadd_ps(widen8_i8(blk[b].qs + 24), _mm256_loadu_ps(xb + 24), t);
                acc = _mm256_fmadd_ps(t, _mm256_set1_ps(fp16_to_fp32(blk[b].d)), acc);
            }
            out[m * N + n] = hsum256(acc);
        }
    }
}

static void matmul_q4_0_simd(float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    const int64_t nb = K / QK4_0;
    const __m256i eight = _mm256_set1_epi32(8);
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const block_q4_0* blk = (const block_q4_0*)(w + n * nb * sizeof(block_q4_0));
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            __m256 acc = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                __m256 t = dot_nibbles32(blk[b].qs, xm + 32 * b, eight, _mm256_setzero_ps());
                acc = _mm256_fmadd_ps(t, _mm256_set1_ps(fp16_to_fp32(blk[b].d)), acc);
            }
            out[m * N + n] = hsum256(acc);
        }
    }
}
#endif

int32_t quant_matmul(int32_t fmt, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                     const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    layout_t L;
    if (M < 0 || K <= 0 || N < 0 || get_layout(fmt, K, group_size, &L)) return -1;
    if (M == 0 || N == 0) return 0;
#ifdef HAVE_SIMD_GEMV
    if (M <= 4) {  /* decode / tiny batches: re-reading a row from L1 per x row beats buffering */
        if (fmt == F_INT8) { matmul_int8_simd(out, x, M, K, N, (const int8_t*)w, scale); return 0; }
        if (fmt == F_Q8_0) { matmul_q8_0_simd(out, x, M, K, N, w); return 0; }
        if (fmt == F_Q4_0) { matmul_q4_0_simd(out, x, M, K, N, w); return 0; }
        if (fmt == F_INT4) {
            const int64_t ng = K / group_size;
            float* sumx = (float*)malloc((size_t)(M * ng) * sizeof(float));
            if (!sumx) return -1;
            for (int64_t m = 0; m < M; m++)
                for (int64_t g = 0; g < ng; g++) {
                    float s = 0.0f;
                    for (int64_t i = 0; i < group_size; i++) s += x[m * K + g * group_size + i];
                    sumx[m * ng + g] = s;
                }
            matmul_int4_simd(out, x, M, K, N, w, scale, zero, group_size, sumx);
            free(sumx);
            return 0;
        }
    }
#endif
    matmul_generic(fmt, out, x, M, K, N, w, scale, zero, group_size, &L);
    return 0;
}

int32_t quant_dequant_rows(int32_t fmt, float* out, int64_t n0, int64_t n1, int64_t K,
                           const uint8_t* w, const float* scale, const uint8_t* zero, int64_t group_size) {
    layout_t L;
    if (n0 < 0 || n1 < n0 || K <= 0 || get_layout(fmt, K, group_size, &L)) return -1;
#pragma omp parallel for schedule(static) if ((n1 - n0) * K >= PAR_MIN)
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t* row = w + n * L.row_bytes;
        for (int64_t b = 0; b < K / L.block; b++)
            decode_block(fmt, row, n, b, K, group_size, &L, scale, zero, out + (n - n0) * K + b * L.block);
    }
    return 0;
}

/* ------------------------------------------------------------------ INT8 x INT8 with VNNI */
int32_t quant_matmul_int8_vnni(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                               const int8_t* w, const float* scale) {
    if (M < 0 || N < 0 || K <= 0 || K % 64) return -1;
    uint8_t* xq = (uint8_t*)malloc((size_t)(M * K));
    float* sx = (float*)malloc((size_t)(M > 0 ? M : 1) * sizeof(float));
    if (!xq || !sx) { free(xq); free(sx); return -1; }
    for (int64_t m = 0; m < M; m++) {  /* x -> int8 per row (absmax), stored +128 as uint8 for vpdpbusd */
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[m * K + k]));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        sx[m] = d;
        for (int64_t k = 0; k < K; k++) xq[m * K + k] = (uint8_t)((int)nearbyintf(x[m * K + k] * id) + 128);
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
                             const uint8_t* w, const float* scale, const uint8_t* zero, int64_t G) {
    if (M < 0 || N < 0 || K <= 0 || G <= 0 || G % 64 || K % G) return -1;
    const int64_t ng = K / G;
    int8_t* xq = (int8_t*)malloc((size_t)(M * K));
    float* dx = (float*)malloc((size_t)(M * ng + 1) * sizeof(float));
    int32_t* sx = (int32_t*)malloc((size_t)(M * ng + 1) * sizeof(int32_t));
    if (!xq || !dx || !sx) { free(xq); free(dx); free(sx); return -1; }
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < ng; g++) {
            const float* xg = x + m * K + g * G;
            float amax = 0.0f;
            for (int64_t i = 0; i < G; i++) amax = fmaxf(amax, fabsf(xg[i]));
            float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            int32_t s = 0;
            /* stored in the order the nibbles unpack: per 64 inputs, [0..16) [32..48) then [16..32) [48..64) */
            int8_t* dst = xq + m * K + g * G;
            for (int64_t c = 0; c < G; c += 64)
                for (int h = 0; h < 2; h++)
                    for (int r = 0; r < 2; r++)
                        for (int j = 0; j < 16; j++) {
                            int v = (int)nearbyintf(xg[c + 32 * r + 16 * h + j] * id);
                            dst[c + 32 * h + 16 * r + j] = (int8_t)v;
                            s += v;
                        }
            dx[m * ng + g] = d;
            sx[m * ng + g] = s;
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
                for (int64_t c = g * G; c < (g + 1) * G; c += 64) {
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
                for (int64_t c = g * G; c < (g + 1) * G; c += 64)
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
