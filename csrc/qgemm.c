/* csrc/qgemm.c -- ggml block weights x int8 activations, see qgemm.h.
   Reference: GGMLLinear.matmul_int8_act_reference (minillm/quant/linear.py).

   x side, once per call (prepare_x): per block b of 32 inputs of a row, the codes q_x (32 int8), d_x,
   and xs = (d_x S_0, d_x S_1), S_h the sum of the codes of half h (44 bytes per 32 inputs: the x side
   of 16 rows of K = 4096 stays in L2 while every row of W passes it).
   W side, per unit of 32 weights: the codes u (32 bytes in one 256-bit register: unpacked with byte
   masks and shifts, never converted to float), the scales s and offsets c of its two halves (from
   the block's header, decoded once per block, i.e. once per 256 weights for the K-quants). Then, per
   row m of x:
       p   = u . q_x             8 int32 lanes, lane i the dot of bytes 4i..4i+3 (lanes 0-3: half 0)
       acc = fma(float(p), S * d_x, acc)     S = (s_0 x4, s_1 x4)
       acc = fma(C, (xs_0, xs_1) x4, acc)    C = (c_0, c_1) x4 / 4: the offsets, vectorised (exact / 4)
   and one horizontal sum per output. Q8_0's codes are signed: u . q_x = |u| . (q_x with u's sign)
   (vpsignb), which keeps maddubs' pairs within int16 (2 * 128 * 127 < 2^15). Two accumulators per row
   (even and odd units) hide the FMA latency at one row; up to MR rows of x share each unpacked unit. */
#include "qgemm.h"
#include "ggml_blocks.h"
#include "parts.inc"
#include "qtiles.h"
#include "runs.inc"
#include "half.inc"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#define QK_K 256
#define MR 8                                   /* rows of x per tile */
#define STREAMS 4                              /* runs of rows of W side by side at M = 1 (rows_runs;
                                                  runs.inc's run_lengths: 4) */
#define PAR_MIN ((int64_t)1 << 18)             /* fewer weights than this: one thread */
#if defined(__AVX2__) && defined(__FMA__)
#define QG_SIMD 1
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12,
       T_Q5_K = 13, T_Q6_K = 14 };

static inline float h2f(const uint8_t* p) {  /* IEEE half at p -> float, exact */
    uint16_t h;
    memcpy(&h, p, 2);
    return half_to_float(h);
}

/* weights and bytes per block; 0 weights for a type qgemm does not read */
static inline int blk_weights(int t) { return t >= T_Q2_K ? QK_K : t == T_Q4_0 || t == T_Q4_1 || t == T_Q5_0 || t == T_Q5_1 || t == T_Q8_0 ? 32 : 0; }
static inline int blk_bytes(int t) {
    switch (t) {
        case T_Q4_0: return 18; case T_Q4_1: return 20; case T_Q5_0: return 22; case T_Q5_1: return 24;
        case T_Q8_0: return 34; case T_Q2_K: return 84; case T_Q3_K: return 110; case T_Q4_K: return 144;
        case T_Q5_K: return 176; case T_Q6_K: return 210; default: return 0;
    }
}

int32_t qgemm_supported(int32_t type) { return blk_weights(type) > 0; }

/* ------------------------------------------------------------------ x side */
/* A block's scale d = amax / 127 into *db, and its inverse: 0 where d is 0, inf or NaN (the block's
   codes are then 0) */
static inline float inverse_scale(float amax, float* db) {
    *db = amax / 127.0f;
    return *db > 0.0f && *db <= FLT_MAX ? 1.0f / *db : 0.0f;
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
/* The same in 512-bit registers: the largest |x| (NaN if any is NaN, as the loop below), then 16
   codes per register, rounded to nearest even and saturated to int8 as the two packs below. A
   decode step quantizes every GEMV input with it (perf, Llama-134M Q4_0 decode: 3.7% of the samples
   in the loop below, 1.1% here). */
static void quantize_block(const float* xb, int8_t* q, float* d, float* xs) {  /* xs: 2 floats */
    const __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
    const float amax = nan ? NAN : _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    float db;
    const float id = inverse_scale(amax, &db);
    if (id == 0.0f) {                /* zero, NaN or inf scale: codes 0 (cvt of NaN is undefined) */
        memset(q, 0, 32);
        *d = db, xs[0] = xs[1] = db * 0.0f;
        return;
    }
    const __m512 I = _mm512_set1_ps(id);
    const __m512i ia = _mm512_cvtps_epi32(_mm512_mul_ps(a, I)), ib = _mm512_cvtps_epi32(_mm512_mul_ps(b, I));
    _mm_storeu_si128((__m128i*)q, _mm512_cvtsepi32_epi8(ia));
    _mm_storeu_si128((__m128i*)(q + 16), _mm512_cvtsepi32_epi8(ib));
    *d = db;
    xs[0] = db * (float)_mm512_reduce_add_epi32(ia);
    xs[1] = db * (float)_mm512_reduce_add_epi32(ib);
}
#else
static void quantize_block(const float* xb, int8_t* q, float* d, float* xs) {  /* xs: 2 floats */
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {  /* not fmaxf: it drops NaN, and NaN in must give NaN out */
        const float a = fabsf(xb[j]);
        amax = (a > amax || a != a) ? a : amax;
    }
    float db;
    const float id = inverse_scale(amax, &db);
    int s[2] = {0, 0};
#if defined(QG_SIMD)
    for (int h = 0; h < 2; h++) {    /* cvtps_epi32 rounds to nearest even (MXCSR default), as rint */
        const __m256 I = _mm256_set1_ps(id);
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * h), I));
        const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * h + 8), I));
        const __m256i ab = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);   /* 16 int16 in order */
        const __m128i p = _mm_packs_epi16(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
        _mm_storeu_si128((__m128i*)(q + 16 * h), p);
        __m256i t = _mm256_add_epi32(a, b);
        __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
        s[h] = id != 0.0f ? _mm_cvtsi128_si32(u) : 0;
        if (id == 0.0f) memset(q + 16 * h, 0, 16);   /* NaN/inf scale: codes 0 (cvt of NaN is undefined) */
    }
#else
    for (int j = 0; j < 32; j++) {
        const int v = id != 0.0f ? (int)nearbyintf(xb[j] * id) : 0;
        q[j] = (int8_t)v;
        s[j / 16] += v;
    }
#endif
    *d = db;
    xs[0] = db * (float)s[0];
    xs[1] = db * (float)s[1];
}
#endif

/* scratch of M rows: codes (M K bytes, padded to 64), d (M K/32 floats), xs (M K/16 floats) */
static inline int64_t q_bytes(int64_t M, int64_t K) { return (M * K + 63) / 64 * 64; }
int64_t qgemm_scratch_bytes(int64_t M, int64_t K) { return q_bytes(M, K) + 4 * (M * K / 32 + M * K / 16); }

void qgemm_prepare_x(const float* x, int64_t M, int64_t K, void* scratch) {
    int8_t* q = (int8_t*)scratch;
    float* d = (float*)((char*)scratch + q_bytes(M, K));
    float* xs = d + M * K / 32;
    for (int64_t i = 0; i < M * K / 32; i++) quantize_block(x + 32 * i, q + 32 * i, d + i, xs + 2 * i);
}

void qgemm_prepare_span(const float* x, int64_t M, int64_t K, int64_t m, int64_t k0, int64_t k1, void* scratch) {
    int8_t* q = (int8_t*)scratch;
    float* d = (float*)((char*)scratch + q_bytes(M, K));
    float* xs = d + M * K / 32;
    for (int64_t i = (m * K + k0) / 32; i < (m * K + k1) / 32; i++)
        quantize_block(x + 32 * i, q + 32 * i, d + i, xs + 2 * i);
}

int32_t qgemm_quantize_x(const float* x, int64_t M, int64_t K, int8_t* q, float* d, float* s) {
    if (K <= 0 || K % 32 || M < 0) return -1;
    for (int64_t i = 0; i < M * K / 32; i++) quantize_block(x + 32 * i, q + 32 * i, d + i, s + 2 * i);
    return 0;
}

/* ------------------------------------------------------------------ W side: block headers
   prep: the block's scales s and offsets c, the formulas of minillm/quant/ggml_blocks.py. Types whose
   s and c hold for 32 weights (Q4_0..Q8_0, Q4_K, Q5_K) give them per unit j: s[j], c[j]; the others
   (Q2_K, Q3_K, Q6_K) per 16 weights: s[2j], s[2j + 1] for unit j. */
typedef struct { float s[16], c[16]; } scl_t;

static inline int per16(int t) { return t == T_Q2_K || t == T_Q3_K || t == T_Q6_K; }

static inline void bytes8_times(const uint8_t* b, float d, float* out, int is_signed) {  /* out[i] = d b[i] */
#if defined(QG_SIMD)
    const __m128i v = _mm_loadl_epi64((const __m128i*)b);
    const __m256i w = is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
    _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(w), _mm256_set1_ps(d)));
#else
    for (int i = 0; i < 8; i++) out[i] = d * (float)(is_signed ? (int)(int8_t)b[i] : (int)b[i]);
#endif
}

/* Q4_K / Q5_K's twelve scale bytes -> the eight 6-bit scales sc and mins m as bytes (ggml's
   get_scale_min_k4 for j = 0..7, four at a time in 32-bit words) */
static inline void k4_scales_mins(const uint8_t* q, uint8_t sc[8], uint8_t m[8]) {
    uint32_t w[3], o[4];
    memcpy(w, q, 12);
    o[0] = w[0] & 0x3F3F3F3Fu;                                        /* sc 0..3: low 6 bits of q[0..3] */
    o[1] = (w[2] & 0x0F0F0F0Fu) | ((w[0] >> 2) & 0x30303030u);        /* sc 4..7: q[8..11] low, q[0..3] top 2 */
    o[2] = w[1] & 0x3F3F3F3Fu;                                        /* m 0..3: q[4..7] */
    o[3] = ((w[2] >> 4) & 0x0F0F0F0Fu) | ((w[1] >> 2) & 0x30303030u); /* m 4..7: q[8..11] high, q[4..7] top 2 */
    memcpy(sc, o, 8);
    memcpy(m, o + 2, 8);
}

static inline __attribute__((always_inline)) void prep(const int t, const uint8_t* B, scl_t* S) {
    switch (t) {
        case T_Q4_0: case T_Q5_0: case T_Q8_0: {
            const float d = h2f(B);
            S->s[0] = d;
            S->c[0] = t == T_Q4_0 ? -8.0f * d : t == T_Q5_0 ? -16.0f * d : 0.0f;
            break;
        }
        case T_Q4_1: case T_Q5_1:
            S->s[0] = h2f(B);
            S->c[0] = h2f(B + 2);
            break;
        case T_Q2_K: {      /* scales[16], qs[64], d, dmin */
            const float d = h2f(B + 80), dmin = h2f(B + 82);
            for (int g = 0; g < 16; g++) S->s[g] = d * (float)(B[g] & 0xF), S->c[g] = -(dmin * (float)(B[g] >> 4));
            break;
        }
        case T_Q3_K: {      /* hmask[32], qs[64], scales[12], d: w = d (sc - 32) (u - 4) */
            const uint8_t* sc = B + 96;
            const float d = h2f(B + 108);
            for (int g = 0; g < 16; g++) {
                const int lo = g < 8 ? sc[g] & 0xF : sc[g - 8] >> 4, hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
                S->s[g] = d * (float)((lo | (hi << 4)) - 32);
                S->c[g] = -4.0f * S->s[g];
            }
            break;
        }
        case T_Q4_K: case T_Q5_K: {   /* d, dmin, scales[12], ... */
            uint8_t sc[8], m[8];
            k4_scales_mins(B + 4, sc, m);
            bytes8_times(sc, h2f(B), S->s, 0);
            bytes8_times(m, -h2f(B + 2), S->c, 0);     /* -(dmin m): the sign is exact */
            break;
        }
        default: {          /* Q6_K: ql[128], qh[64], scales[16] int8, d: w = d sc (u - 32) */
            const float d = h2f(B + 208);
            bytes8_times(B + 192, d, S->s, 1);
            bytes8_times(B + 200, d, S->s + 8, 1);
            for (int g = 0; g < 16; g++) S->c[g] = -32.0f * S->s[g];
        }
    }
}

/* ------------------------------------------------------------------ W side: the codes of unit j */
#if defined(QG_SIMD)
typedef __m256i codes_t;
static inline __m256i ld32(const uint8_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
static inline __m256i low4(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0xF)); }
static inline __m256i bits_at(__m256i v, int sh, int mask) {  /* (byte >> sh) & mask, per byte */
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(sh)), _mm256_set1_epi8((char)mask));
}
static inline __m256i nib16(const uint8_t* p) {  /* 16 bytes -> low nibbles, then high */
    const __m128i v = _mm_loadu_si128((const __m128i*)p), m = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
static inline __m256i bit5_of_u32(const uint8_t* qh) {  /* bit j of the u32 at qh -> 16 in byte j */
    uint32_t v;
    memcpy(&v, qh, 4);
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bm = _mm256_set1_epi64x(0x8040201008040201LL);
    const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)v), idx), bm);
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, bm), _mm256_set1_epi8(16));
}
/* The twelve scale bytes q of a Q4_K / Q5_K block as bytes: the 8 scales sc in bytes 0-7, the 8 mins
   m in bytes 8-15 (k4_scales_mins' bit fields in registers, four bytes per 32-bit lane; reads 16
   bytes at q, inside the block) */
static inline __m128i k4_scales_mins_128(const uint8_t* q) {
    const __m128i v = _mm_loadu_si128((const __m128i*)q);                      /* w0 w1 w2 (+ 4 code bytes) */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 1, 0)),
                                                    _mm_setr_epi32(0, 0, 0, 4)),           /* w0 w1 w2 w2>>4 */
                                     _mm_setr_epi32(0x3F3F3F3F, 0x3F3F3F3F, 0x0F0F0F0F, 0x0F0F0F0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0)), 2),
                                     _mm_setr_epi32(0, 0, 0x30303030, 0x30303030));        /* top 2 bits */
    const __m128i r = _mm_or_si128(lo, hi);                                     /* sc0-3 m0-3 sc4-7 m4-7 */
    return _mm_shuffle_epi32(r, _MM_SHUFFLE(3, 1, 2, 0));
}
#define OR(a, b) _mm256_or_si256(a, b)
#define SHL(v, n) _mm256_slli_epi16(v, n)    /* only on bytes whose set bits stay inside the byte */
#else
typedef struct { uint8_t b[32]; } codes_t;
static inline codes_t ld32(const uint8_t* p) { codes_t c; memcpy(c.b, p, 32); return c; }
static inline codes_t low4(codes_t v) { for (int l = 0; l < 32; l++) v.b[l] &= 0xF; return v; }
static inline codes_t bits_at(codes_t v, int sh, int mask) {
    for (int l = 0; l < 32; l++) v.b[l] = (uint8_t)((v.b[l] >> sh) & mask);
    return v;
}
static inline codes_t nib16(const uint8_t* p) {
    codes_t c;
    for (int l = 0; l < 16; l++) c.b[l] = p[l] & 0xF, c.b[l + 16] = p[l] >> 4;
    return c;
}
static inline codes_t bit5_of_u32(const uint8_t* qh) {
    codes_t c;
    for (int l = 0; l < 32; l++) c.b[l] = (uint8_t)(((qh[l / 8] >> (l % 8)) & 1) << 4);
    return c;
}
static inline codes_t OR(codes_t a, codes_t b) { for (int l = 0; l < 32; l++) a.b[l] |= b.b[l]; return a; }
static inline codes_t SHL(codes_t a, int n) { for (int l = 0; l < 32; l++) a.b[l] = (uint8_t)(a.b[l] << n); return a; }
#endif

/* unit j of block B (32 weights): unsigned codes u (signed for Q8_0), w = s u + c per half */
static inline __attribute__((always_inline)) codes_t unit(const int t, const uint8_t* B, int j) {
    switch (t) {
        case T_Q4_0: return nib16(B + 2);
        case T_Q4_1: return nib16(B + 4);
        case T_Q5_0: return OR(nib16(B + 6), bit5_of_u32(B + 2));
        case T_Q5_1: return OR(nib16(B + 8), bit5_of_u32(B + 4));
        case T_Q8_0: return ld32(B + 2);
        case T_Q2_K: return bits_at(ld32(B + 16 + 32 * (j / 4)), 2 * (j % 4), 3);
        case T_Q3_K: return OR(bits_at(ld32(B + 32 + 32 * (j / 4)), 2 * (j % 4), 3),
                               SHL(bits_at(ld32(B), j, 1), 2));
        case T_Q4_K: {
            const codes_t v = ld32(B + 16 + 32 * (j / 2));
            return j & 1 ? bits_at(v, 4, 0xF) : low4(v);
        }
        case T_Q5_K: {
            const codes_t v = ld32(B + 48 + 32 * (j / 2));
            return OR(j & 1 ? bits_at(v, 4, 0xF) : low4(v), SHL(bits_at(ld32(B + 16), j, 1), 4));
        }
        default: {          /* Q6_K: unit j = 4 h + r of the two halves h of 128 */
            const int h = j / 4, r = j % 4;
            const codes_t lo = bits_at(ld32(B + 64 * h + 32 * (r & 1)), 4 * (r >> 1), 0xF);
            return OR(lo, SHL(bits_at(ld32(B + 128 + 32 * h), 2 * r, 3), 4));
        }
    }
}

/* ------------------------------------------------------------------ the tile: mt rows of x, one row of W */
typedef struct {
    const int8_t* q;   /* (M, K) codes */
    const float* d;    /* (M, K/32) */
    const float* xs;   /* (M, K/16) */
    int64_t K;
} xq_t;

static inline double pair_of(const float* p) {  /* two floats as the bits of one double */
    double v;
    memcpy(&v, p, 8);
    return v;
}

#if defined(QG_SIMD)
typedef __m256 acc_t;
static inline __m256i dot_u8s8(__m256i u, __m256i v) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, v);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1));
#endif
}
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* acc + the unit's contribution for one row of x (codes xq, scale dx, offsets xs) */
static inline __attribute__((always_inline)) __m256 unit_row(const int t, __m256i u, __m256 S, __m256 C,
                                                             const int8_t* xq, float dx, const float* xs, __m256 acc) {
    const __m256i xv = _mm256_loadu_si256((const __m256i*)xq);
    const __m256i p = t == T_Q8_0 ? dot_u8s8(_mm256_sign_epi8(u, u), _mm256_sign_epi8(xv, u)) : dot_u8s8(u, xv);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(S, _mm256_set1_ps(dx)), acc);
    if (t == T_Q8_0) return acc;                                    /* (xs_0, xs_1) in every lane pair */
    return _mm256_fmadd_ps(C, _mm256_castpd_ps(_mm256_set1_pd(pair_of(xs))), acc);
}
#define PAIR(a, b) _mm256_set_m128(_mm_set1_ps(b), _mm_set1_ps(a))
#define AZERO() _mm256_setzero_ps()
#define AADD(a, b) _mm256_add_ps(a, b)
#else
typedef float acc_t;
static inline float unit_row(const int t, codes_t u, const float* S, const float* C, const int8_t* xq, float dx,
                             const float* xs, float acc) {
    int32_t p[2] = {0, 0};
    for (int l = 0; l < 32; l++) p[l / 16] += (t == T_Q8_0 ? (int)(int8_t)u.b[l] : (int)u.b[l]) * (int)xq[l];
    return acc + dx * (S[0] * (float)p[0] + S[1] * (float)p[1]) + C[0] * xs[0] + C[1] * xs[1];
}
#define AZERO() 0.0f
#define AADD(a, b) ((a) + (b))
#define hsum(v) (v)
#endif

/* x block xb (unit xb % upb of W's block xb / upb) against mt rows, into accumulators acc[.][par] */
#if defined(QG_SIMD)
#define UNIT_SCALES(t, st, j)                                                                  \
    const __m256 S = per16(t) ? PAIR(st.s[2 * j], st.s[2 * j + 1]) : _mm256_set1_ps(st.s[j]); \
    const __m256 C = per16(t) ? _mm256_mul_ps(_mm256_castpd_ps(_mm256_set1_pd(pair_of(st.c + 2 * j))),         \
                                              _mm256_set1_ps(0.25f))                          \
                              : _mm256_set1_ps(0.25f * st.c[j]);
#else
#define UNIT_SCALES(t, st, j)                                                                  \
    const float S[2] = {per16(t) ? st.s[2 * j] : st.s[j], per16(t) ? st.s[2 * j + 1] : st.s[j]}; \
    const float C[2] = {per16(t) ? st.c[2 * j] : st.c[j], per16(t) ? st.c[2 * j + 1] : st.c[j]};
#endif

/* unit j of W's block B (x block xb) against mt rows, into the accumulators acc[.][par] */
#define DO_UNIT(B, j, xb, par)                                                                 \
    do {                                                                                       \
        const codes_t u = unit(t, B, j);                                                       \
        UNIT_SCALES(t, st, j)                                                                  \
        for (int m = 0; m < mt; m++)                                                           \
            acc[m][par] = unit_row(t, u, S, C, X->q + m * X->K + 32 * (xb), X->d[m * nxb + (xb)], \
                                   X->xs + (m * nxb + (xb)) * 2, acc[m][par]);                 \
    } while (0)

/* res[m] = W[row] . x[m] for mt rows of x starting at X (t, mt constants after inlining) */
static inline __attribute__((always_inline)) void tile(const int t, const uint8_t* row, const xq_t* X,
                                                       float* res, const int mt) {
    const int64_t nxb = X->K / 32, bytes = blk_bytes(t);
    acc_t acc[MR][2];
    scl_t st;
    for (int m = 0; m < mt; m++) acc[m][0] = acc[m][1] = AZERO();
    if (blk_weights(t) == 32) {                   /* one unit per block: blocks in pairs */
        int64_t b = 0;
        for (; b + 1 < nxb; b += 2) {
            prep(t, row + b * bytes, &st);
            DO_UNIT(row + b * bytes, 0, b, 0);
            prep(t, row + (b + 1) * bytes, &st);
            DO_UNIT(row + (b + 1) * bytes, 0, b + 1, 1);
        }
        if (b < nxb) {
            prep(t, row + b * bytes, &st);
            DO_UNIT(row + b * bytes, 0, b, 0);
        }
    } else {                                      /* K-quants: 8 units per block, unrolled */
        for (int64_t b = 0; b < nxb / 8; b++) {
            const uint8_t* B = row + b * bytes;
            prep(t, B, &st);
            DO_UNIT(B, 0, 8 * b, 0); DO_UNIT(B, 1, 8 * b + 1, 1);
            DO_UNIT(B, 2, 8 * b + 2, 0); DO_UNIT(B, 3, 8 * b + 3, 1);
            DO_UNIT(B, 4, 8 * b + 4, 0); DO_UNIT(B, 5, 8 * b + 5, 1);
            DO_UNIT(B, 6, 8 * b + 6, 0); DO_UNIT(B, 7, 8 * b + 7, 1);
        }
    }
    for (int m = 0; m < mt; m++) res[m] = hsum(AADD(acc[m][0], acc[m][1]));
}

/* One row of x on AVX-512 VNNI: two units per 512-bit dot (lanes 0-7 unit j, 8-15 unit j + 1), so the
   per-unit work (dot, convert, scale, accumulate) is halved; the offsets of four halves of 16 go into
   one 128-bit FMA. Same sums as tile(t, ..., 1) in another order. */
#if defined(QG_SIMD) && defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define QG_ROW1 1
/* software prefetch of the n bytes PREFETCH_AHEAD past p (the next rows of W, streaming from DRAM:
   the hardware prefetcher alone left the single-row kernel ~30% below the float one there) */
#define PREFETCH_AHEAD 2048
static inline __attribute__((always_inline)) void prefetch_ahead(const uint8_t* p, int64_t n) {
    /* written out, not as a loop over o: GCC 12 dropped the loop's prefetches from every rows_T */
    _mm_prefetch((const char*)(p + PREFETCH_AHEAD), _MM_HINT_T0);
    if (n > 64) _mm_prefetch((const char*)(p + PREFETCH_AHEAD + 64), _MM_HINT_T0);
    if (n > 128) _mm_prefetch((const char*)(p + PREFETCH_AHEAD + 128), _MM_HINT_T0);
    if (n > 192) _mm_prefetch((const char*)(p + PREFETCH_AHEAD + 192), _MM_HINT_T0);
}

static inline __m128 pair_ps(const float* p) { return _mm_castpd_ps(_mm_load_sd((const double*)p)); }

/* units u0, u1 (x blocks xb, xb + 1); s: their 2 scales (4 for the per-16 types), c: their offsets,
   in the low lanes (built in registers: a store of two floats read back as one 8-byte load would
   miss the store forwarding) */
static inline __attribute__((always_inline)) void pair1(const int t, __m256i u0, __m256i u1, __m128 s, __m128 c,
                                                        const xq_t* X, int64_t xb, __m512* acc, __m128* off) {
    const __m512i idx2 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m256i x0 = _mm256_loadu_si256((const __m256i*)(X->q + 32 * xb));
    __m256i x1 = _mm256_loadu_si256((const __m256i*)(X->q + 32 * xb + 32));
    if (t == T_Q8_0) {     /* signed codes: |u| . (x with u's sign) */
        x0 = _mm256_sign_epi8(x0, u0), u0 = _mm256_sign_epi8(u0, u0);
        x1 = _mm256_sign_epi8(x1, u1), u1 = _mm256_sign_epi8(u1, u1);
    }
    const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1);
    const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
    const __m512 dx = _mm512_permutexvar_ps(idx2, _mm512_castps128_ps512(pair_ps(X->d + xb)));
    const __m512 sv = _mm512_permutexvar_ps(per16(t) ? idx4 : idx2, _mm512_castps128_ps512(s));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sv, dx), *acc);
    if (t != T_Q8_0) {
        const __m128 cv = per16(t) ? c : _mm_unpacklo_ps(c, c);
        *off = _mm_fmadd_ps(cv, _mm_loadu_ps(X->xs + 2 * xb), *off);
    }
}

/* the scales or offsets of units j, j + 1 of a prepared block (4 values for the per-16 types) */
static inline __attribute__((always_inline)) __m128 pick(const int t, const float* v, int j) {
    return per16(t) ? _mm_loadu_ps(v + 2 * j) : pair_ps(v + j);
}
static inline __m128 two(float a, float b) { return _mm_unpacklo_ps(_mm_set_ss(a), _mm_set_ss(b)); }

/* Q4_0, Q4_1, Q8_0: the formats whose 32-weight blocks hold d (and m for Q4_1) in their first 4 bytes;
   their rows are rows_b32 below */
static inline int fast_pair(int t) { return t == T_Q4_0 || t == T_Q4_1 || t == T_Q8_0; }

static inline __attribute__((always_inline)) void qpair(const int t, const uint8_t* row, int64_t b, int64_t bytes,
                                                        const xq_t* X, __m512* acc, __m128* off) {
    scl_t s0, s1;                        /* two 32-weight blocks b, b + 1 */
    prep(t, row + b * bytes, &s0);
    prep(t, row + (b + 1) * bytes, &s1);
    pair1(t, unit(t, row + b * bytes, 0), unit(t, row + (b + 1) * bytes, 0), two(s0.s[0], s1.s[0]),
          two(s0.c[0], s1.c[0]), X, b, acc, off);
}

/* One row of W at M = 1 for the formats decode streams most (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K): the
   same sums as row1_any below with less work per 64 weights, which matters because at M = 1 these
   rows are compute-bound, not memory-bound, on one core (an L2-resident Q4_K row ran at ~5 GB/s,
   below one core's ~9 GB/s share of DRAM). Per pair of units: the codes in 2-3 instructions (a
   broadcast load and a variable shift per 16-bit lane give low and high nibbles side by side in x's
   order), one dot, one convert, one permute that spreads the pair's two combined scales s d_x over
   their lanes, one FMA. The combined scales s d_x and the offsets c (sum q_x) d_x of 16 blocks (or
   one K-quant super-block) are computed once, vectorised: for the 32-weight blocks the 16 fp16
   headers are read with one gather. */
static inline __m512 pairs_of(__m512 v, int p) {      /* lanes 0-7: v[2p], lanes 8-15: v[2p + 1] */
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                         _mm512_set1_epi32(2 * p));
    return _mm512_permutexvar_ps(idx, v);
}

static inline float reduce2(__m512 a, __m512 b) { return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); }

/* the codes of blocks B0, B1 (Q4_0, Q4_1, Q8_0) as 64 unsigned bytes in x's order (Q8_0 as u + 128;
   Q4_0, Q4_1: weights 16-31 of each block as 16 u, the high nibbles left in place, whose 1/16 the
   scales carry: pair_scales); one: only B0 (the upper 32 bytes are then don't-care: the caller
   zeroes x there) */
static inline __attribute__((always_inline)) __m512i b32_codes(const int t, const uint8_t* B0, const uint8_t* B1,
                                                             const int one) {
    if (t == T_Q8_0) {
        const __m512i lo = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(B0 + 2)));
        const __m512i w = one ? lo : _mm512_inserti64x4(lo, _mm256_loadu_si256((const __m256i*)(B1 + 2)), 1);
        return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
    }
    const int o = t == T_Q4_0 ? 2 : 4;            /* 16 bytes: low nibbles weights 0-15, high 16-31 */
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(B0 + o)));
    if (!one) v = _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128((const __m128i*)(B1 + o)));
    const __m512i nibs = _mm512_setr_epi64(0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL, (long long)0xF0F0F0F0F0F0F0F0ULL,
                                           (long long)0xF0F0F0F0F0F0F0F0ULL, 0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                           (long long)0xF0F0F0F0F0F0F0F0ULL, (long long)0xF0F0F0F0F0F0F0F0ULL);
    return _mm512_and_si512(v, nibs);             /* weights 16-31 of each block as 16 u, in place */
}

/* The scales of pair p for the nibble formats: lanes 0-3 S[2p], 4-7 S16[2p], 8-11 S[2p + 1], 12-15
   S16[2p + 1], S16 = S / 16 (b32_codes leaves weights 16-31 of a block as 16 u); Q8_0: pairs_of */
static inline __m512 pair_scales(const int t, __m512 S, __m512 S16, int p) {
    if (t == T_Q8_0) return pairs_of(S, p);
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 16, 16, 16, 16, 1, 1, 1, 1, 17, 17, 17, 17),
                                         _mm512_set1_epi32(2 * p));
    return _mm512_permutex2var_ps(S, idx, S16);
}

/* blocks g .. g + n - 1 (n <= 16) of a row of 32-weight blocks, W's side: the scales d and offsets c
   of the 16 blocks (lanes past n: 0), from one gather of the blocks' first 4 bytes */
static inline __attribute__((always_inline)) void b32_header(const int t, const uint8_t* row, int64_t g, int n,
                                                           __m512* d, __m512* c) {
    const int bytes = blk_bytes(t);
    const __mmask16 k = (__mmask16)((1u << n) - 1);
    const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(bytes));
    const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, at, row + g * bytes, 1);
    *d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));                          /* fp16 d at each block's start */
    *c = t == T_Q4_1 ? _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)))             /* m */
                     : _mm512_mul_ps(*d, _mm512_set1_ps(t == T_Q4_0 ? -8.0f : -128.0f));
}

/* the same blocks, x's side (row m of X): returns S = s d_x per block, and off += c (d_x sum q_x) */
static inline __attribute__((always_inline)) __m512 b32_x(const xq_t* X, int m, int64_t g, int n, __m512 d, __m512 c,
                                                        __m512* off) {
    const int64_t nxb = X->K / 32;
    const float* dx = X->d + m * nxb + g, *xs = X->xs + 2 * (m * nxb + g);
    const __mmask16 k = (__mmask16)((1u << n) - 1);
    const __m512 xa = _mm512_maskz_loadu_ps((__mmask16)(n >= 8 ? 0xFFFF : (1u << 2 * n) - 1), xs);
    const __m512 xb = _mm512_maskz_loadu_ps((__mmask16)(n > 8 ? (1u << 2 * (n - 8)) - 1 : 0), xs + 16);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 xsum = _mm512_add_ps(_mm512_permutex2var_ps(xa, even, xb),      /* d_x sum q_x per block */
                                      _mm512_permutex2var_ps(xa, _mm512_add_epi32(even, _mm512_set1_epi32(1)), xb));
    *off = _mm512_fmadd_ps(c, xsum, *off);
    return _mm512_mul_ps(d, _mm512_maskz_loadu_ps(k, dx));
}

/* acc += the dot of codes u with x (64 bytes at xq), converted, times the scales sv per lane */
#define ACC_PAIR(acc, u, xq, sv) (acc) = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(             \
                                             _mm512_setzero_si512(), (u), _mm512_loadu_si512((const void*)(xq)))), \
                                         (sv), (acc))

/* res[w mt + m] = W[rows[w]] . x[m] for nw rows of W and mt rows of x, nw mt <= MR (Q4_0, Q4_1, Q8_0);
   each (w, m)'s float operations are the same for every nw and mt, so a result does not depend on
   the rows beside it, of W or of x */
static inline __attribute__((always_inline)) void rows_b32(const int t, const uint8_t* const* rows, const int nw,
                                                         const xq_t* X, float* res, const int mt) {
    const int64_t nxb = X->K / 32, bytes = blk_bytes(t);
    __m512 acc0[MR], acc1[MR], off[MR], S[MR], S16[MR];
    for (int r = 0; r < nw * mt; r++) acc0[r] = acc1[r] = off[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nxb; g += 16) {
        const int n = nxb - g < 16 ? (int)(nxb - g) : 16, pairs = n / 2;
        for (int w = 0; w < nw; w++) {
            __m512 d, c;
            b32_header(t, rows[w], g, n, &d, &c);
            for (int m = 0; m < mt; m++) {
                const int r = w * mt + m;
                S[r] = b32_x(X, m, g, n, d, c, &off[r]);
                S16[r] = t == T_Q8_0 ? S[r] : _mm512_mul_ps(S[r], _mm512_set1_ps(0.0625f));   /* exact */
            }
        }
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {                 /* unrolled: each pair's permute takes a constant */
            if (p >= pairs) break;
            for (int w = 0; w < nw; w++) {
                const uint8_t* B0 = rows[w] + (g + 2 * p) * bytes;
                prefetch_ahead(B0, 2 * bytes);
                const __m512i u = b32_codes(t, B0, B0 + bytes, 0);
                for (int m = 0; m < mt; m++) {
                    const int8_t* xq = X->q + m * X->K + 32 * (g + 2 * p);
                    const int r = w * mt + m;
                    if (p & 1) ACC_PAIR(acc1[r], u, xq, pair_scales(t, S[r], S16[r], p));
                    else ACC_PAIR(acc0[r], u, xq, pair_scales(t, S[r], S16[r], p));
                }
            }
        }
        if (n & 1) {                                  /* an odd last block: x's upper half masked to 0 */
            for (int w = 0; w < nw; w++) {
                const uint8_t* B0 = rows[w] + (g + 2 * pairs) * bytes;
                const __m512i u = b32_codes(t, B0, B0, 1);
                for (int m = 0; m < mt; m++) {
                    const int r = w * mt + m;
                    const __m512i x = _mm512_maskz_loadu_epi8(0xFFFFFFFFULL, (const void*)(X->q + m * X->K + 32 * (g + 2 * pairs)));
                    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
                    acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_maskz_mov_ps(0x00FF, pair_scales(t, S[r], S16[r], pairs)),
                                              acc1[r]);
                }
            }
        }
    }
    for (int r = 0; r < nw * mt; r++) res[r] = reduce2(acc0[r], acc1[r]) + _mm512_reduce_add_ps(off[r]);
}

/* The twelve scale bytes q of a Q4_K block as floats: the 8 scales sc in lanes 0-7, the 8 mins m in
   lanes 8-15 (k4_scales_mins_128 below) */
static inline __m512 k4_scales_mins_ps(const uint8_t* q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(k4_scales_mins_128(q)));
}

/* Q4_K, mt rows of x: per super-block of 256 weights, the 8 scales s d_x and the offsets
   -dmin m (sum q_x) d_x at once; unit pair p (units 2p, 2p + 1) is the 32 code bytes at 16 + 32 p:
   low nibbles unit 2p, high nibbles unit 2p + 1. The pair's codes are one AND of those bytes
   (broadcast to both halves) with 0x0F | 0xF0: the high nibbles stay in place, as 16 u, and the
   odd units' scales carry the 1/16 (exact: a power of two, so each product, sum and rounding is
   the one the shifted codes gave, to the bit) -- one instruction per pair fewer. */
static inline __attribute__((always_inline)) void rows_q4k(const uint8_t* const* rows, const int nw, const xq_t* X,
                                                         float* res, const int mt) {
    const int64_t nsb = X->K / QK_K, nxb = X->K / 32;
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i mins = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __m512i nib = _mm512_inserti64x4(_mm512_set1_epi8(0x0F), _mm256_set1_epi8((char)0xF0), 1);
    const __m512 odd16 = _mm512_setr_ps(1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f, 1.0f, 0.0625f,
                                        1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f);
    __m512 acc0[MR], acc1[MR], off[MR], S[MR];
    for (int r = 0; r < nw * mt; r++) acc0[r] = acc1[r] = off[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b++) {
        for (int w = 0; w < nw; w++) {
            const uint8_t* B = rows[w] + b * 144;
            prefetch_ahead(B, 144);
            uint32_t h;
            memcpy(&h, B, 4);
            const __m512 dm = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)h))));
            const __m512 v = _mm512_mul_ps(k4_scales_mins_ps(B + 4), _mm512_mul_ps(dm, odd16));  /* d sc, dmin m */
            const __m512 c = _mm512_permutexvar_ps(mins, v);
            for (int m = 0; m < mt; m++) {
                const int r = w * mt + m;
                S[r] = _mm512_mul_ps(v, _mm512_zextps256_ps512(_mm256_loadu_ps(X->d + m * nxb + 8 * b)));
                off[r] = _mm512_fnmadd_ps(c, _mm512_loadu_ps(X->xs + 2 * m * nxb + 16 * b), off[r]);
            }
        }
        for (int p = 0; p < 4; p++) {
            for (int w = 0; w < nw; w++) {
                const uint8_t* B = rows[w] + b * 144;
                const __m512i wv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(B + 16 + 32 * p)));
                const __m512i u = _mm512_and_si512(wv, nib);       /* unit 2p's codes | unit 2p + 1's times 16 */
                for (int m = 0; m < mt; m++) {
                    const int8_t* xq = X->q + m * X->K + 32 * (8 * b + 2 * p);
                    const int r = w * mt + m;
                    if (p & 1) ACC_PAIR(acc1[r], u, xq, pairs_of(S[r], p));
                    else ACC_PAIR(acc0[r], u, xq, pairs_of(S[r], p));
                }
            }
        }
    }
    for (int r = 0; r < nw * mt; r++) res[r] = reduce2(acc0[r], acc1[r]) + _mm512_reduce_add_ps(off[r]);
}

/* Q6_K, mt rows of x: ql[128], qh[64], scales[16] int8, d; unit j = 4 h + r: low 4 bits from
   ql[64 h + 32 (r & 1)] (shifted by 4 (r >> 1)), top 2 from qh[32 h] (shifted by 2 r). Units r = 0, 1
   (and 2, 3) of a half read one 64-byte ql load with one shift; their qh bits come from one broadcast
   with a shift per half. Scales per 16 weights: lanes 4i..4i+3 of a pair's dot carry scale 4 of them. */
static inline __attribute__((always_inline)) void rows_q6k(const uint8_t* const* rows, const int nw, const xq_t* X,
                                                         float* res, const int mt) {
    const int64_t nsb = X->K / QK_K, nxb = X->K / 32;
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i sh01 = _mm512_setr_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                           0x0004000400040004LL, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);  /* qh << 4, << 2 */
    const __m512i sh23 = _mm512_setr_epi64(0, 0, 0, 0, 0x0002000200020002LL, 0x0002000200020002LL,
                                           0x0002000200020002LL, 0x0002000200020002LL);  /* qh >> 0, >> 2 */
    const __m512i lo4 = _mm512_set1_epi8(0xF), top2 = _mm512_set1_epi8(0x30);
    __m512 acc0[MR], acc1[MR], off[MR], S[MR];
    for (int r = 0; r < nw * mt; r++) acc0[r] = acc1[r] = off[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b++) {
        for (int w = 0; w < nw; w++) {
            const uint8_t* B = rows[w] + b * 210;
            prefetch_ahead(B, 210);
            const __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(B + 192)))),
                                           _mm512_set1_ps(h2f(B + 208)));             /* s per 16 weights */
            const __m512 c = _mm512_mul_ps(s, _mm512_set1_ps(-32.0f));
            for (int m = 0; m < mt; m++) {
                const int r = w * mt + m;
                off[r] = _mm512_fmadd_ps(c, _mm512_loadu_ps(X->xs + 2 * m * nxb + 16 * b), off[r]);
                S[r] = _mm512_mul_ps(s, _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(
                                                                      _mm256_loadu_ps(X->d + m * nxb + 8 * b))));
            }
        }
        for (int h = 0; h < 2; h++) {
            for (int w = 0; w < nw; w++) {
                const uint8_t* B = rows[w] + b * 210;
                const __m512i ql = _mm512_loadu_si512((const void*)(B + 64 * h));
                const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(B + 128 + 32 * h)));
                for (int r4 = 0; r4 < 4; r4 += 2) {
                    const __m512i lo = _mm512_and_si512(r4 ? _mm512_srli_epi16(ql, 4) : ql, lo4);
                    const __m512i hi = _mm512_and_si512(r4 ? _mm512_srlv_epi16(qh, sh23) : _mm512_sllv_epi16(qh, sh01), top2);
                    const __m512i u = _mm512_or_si512(lo, hi);
                    const int j = 4 * h + r4;                 /* units j, j + 1: x blocks 8 b + j, + 1 */
                    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                         _mm512_set1_epi32(2 * j));
                    for (int m = 0; m < mt; m++) {
                        const int8_t* xq = X->q + m * X->K + 32 * (8 * b + j);
                        const int r = w * mt + m;
                        if (r4) ACC_PAIR(acc1[r], u, xq, _mm512_permutexvar_ps(idx, S[r]));
                        else ACC_PAIR(acc0[r], u, xq, _mm512_permutexvar_ps(idx, S[r]));
                    }
                }
            }
        }
    }
    for (int r = 0; r < nw * mt; r++) res[r] = reduce2(acc0[r], acc1[r]) + _mm512_reduce_add_ps(off[r]);
}

/* the formats with rows of their own above: 1, and res[w mt + m] = W[rows[w]] . x[m] (nw mt <= MR) */
static inline __attribute__((always_inline)) int own_rows(const int t, const uint8_t* const* rows, const int nw,
                                                        const xq_t* X, float* res, const int mt) {
    if (fast_pair(t)) rows_b32(t, rows, nw, X, res, mt);
    else if (t == T_Q4_K) rows_q4k(rows, nw, X, res, mt);
    else if (t == T_Q6_K) rows_q6k(rows, nw, X, res, mt);
    else return 0;
    return 1;
}

static inline __attribute__((always_inline)) float row1_any(const int t, const uint8_t* row, const xq_t* X) {
    const int64_t nxb = X->K / 32, bytes = blk_bytes(t);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 off0 = _mm_setzero_ps(), off1 = _mm_setzero_ps();
    float tail = 0.0f;
    if (blk_weights(t) == 32) {
        int64_t b = 0;
        for (; b + 3 < nxb; b += 4) {
            prefetch_ahead(row + b * bytes, 4 * bytes);
            qpair(t, row, b, bytes, X, &acc0, &off0);
            qpair(t, row, b + 2, bytes, X, &acc1, &off1);
        }
        for (; b + 1 < nxb; b += 2) qpair(t, row, b, bytes, X, &acc0, &off0);
        if (b < nxb) {                   /* an odd last block: the 256-bit unit */
            scl_t st;
            prep(t, row + b * bytes, &st);
            const int mt = 1;
            __m256 acc[1][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}};
            const int64_t xb = b;
            const uint8_t* B = row + b * bytes;
            const codes_t u = unit(t, B, 0);
            UNIT_SCALES(t, st, 0)
            for (int m = 0; m < mt; m++)
                acc[m][0] = unit_row(t, u, S, C, X->q + 32 * xb, X->d[xb], X->xs + 2 * xb, acc[m][0]);
            tail = hsum(acc[0][0]);
        }
    } else {
        for (int64_t b = 0; b < nxb / 8; b++) {
            const uint8_t* B = row + b * bytes;
            scl_t st;
            prefetch_ahead(B, bytes);
            prep(t, B, &st);
            for (int j = 0; j < 8; j += 2)
                pair1(t, unit(t, B, j), unit(t, B, j + 1), pick(t, st.s, j), pick(t, st.c, j), X, 8 * b + j,
                      (j & 2) ? &acc1 : &acc0, (j & 2) ? &off1 : &off0);
        }
    }
    const __m128 o = _mm_add_ps(off0, off1);
    const __m128 o2 = _mm_add_ps(o, _mm_movehl_ps(o, o));
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(o2, _mm_movehdup_ps(o2))) + tail;
}

static inline __attribute__((always_inline)) float row1(const int t, const uint8_t* row, const xq_t* X) {
    float r;
    return own_rows(t, &row, 1, X, &r, 1) ? r : row1_any(t, row, X);
}

/* One row of x against STREAMS runs of rows of W side by side: run j is rows n0 + j gap .. + count - 1,
   cut at row end; out[r - n0] = W[r] . x. Each step reads the next block of every run, so a thread
   streams from STREAMS places at once. From DRAM one stream per thread left the read well below what
   the memory gives (the hardware prefetcher follows a stream within a 4 KiB page, so one stream keeps
   few lines in flight): a streaming read of 256 MiB on 2 threads went from ~16 to ~22 GB/s with 4
   runs per thread, and a Q4_K GEMV 1.3-1.6x. The rows the runs share a count of go through the
   STREAMS-row kernels (formats with rows of their own), the rest one by one; each row's float
   operations are those of row1 either way, so its result does not depend on the grouping. */
static inline int has_own_rows(int t) { return fast_pair(t) || t == T_Q4_K || t == T_Q6_K; }

static inline __attribute__((always_inline)) void rows_runs(const int t, float* out, const xq_t* X, int64_t n0,
                                                          int64_t count, int64_t gap, int64_t end,
                                                          const uint8_t* w, int64_t row_bytes) {
    int64_t len[STREAMS];
    const int64_t shared = run_lengths(n0, count, gap, end, len);
    const int64_t common = has_own_rows(t) ? shared : 0;       /* the others: row by row */
    float res[STREAMS];
    for (int64_t i = 0; i < common; i++) {
        const uint8_t* rows[STREAMS];
        for (int j = 0; j < STREAMS; j++) rows[j] = w + (n0 + j * gap + i) * row_bytes;
        own_rows(t, rows, STREAMS, X, res, 1);
        for (int j = 0; j < STREAMS; j++) out[j * gap + i] = res[j];
    }
    for (int j = 0; j < STREAMS; j++)
        for (int64_t i = common; i < len[j]; i++) out[j * gap + i] = row1(t, w + (n0 + j * gap + i) * row_bytes, X);
}
#endif

#if defined(QG_ROW1)
/* mt rows of x on AVX-512 VNNI: as tile(), two units per 512-bit dot. Q8_0's codes go in as u + 128
   (unsigned; w = d (u - 128): its offset -128 d joins the others), the x codes of the two units are
   one 64-byte load. Per row and pair of units: dot, convert, scale, FMA, offset FMA. */
static inline __attribute__((always_inline)) void pair_rows(const int t, __m256i u0, __m256i u1, __m128 s,
                                                            __m128 c, const xq_t* X, int64_t xb, __m512* acc,
                                                            __m128* off, const int mt) {
    const __m512i idx2 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1);
    if (t == T_Q8_0) u = _mm512_xor_si512(u, _mm512_set1_epi8((char)0x80));
    const __m512 sv = _mm512_permutexvar_ps(per16(t) ? idx4 : idx2, _mm512_castps128_ps512(s));
    const __m128 cp = t == T_Q8_0 ? _mm_mul_ps(s, _mm_set1_ps(-128.0f)) : c;
    const __m128 cv = per16(t) ? cp : _mm_unpacklo_ps(cp, cp);
    for (int m = 0; m < mt; m++) {
        const int64_t nxb = X->K / 32;
        const __m512i x = _mm512_loadu_si512((const void*)(X->q + m * X->K + 32 * xb));
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
        const __m512 dx = _mm512_permutexvar_ps(idx2, _mm512_castps128_ps512(pair_ps(X->d + m * nxb + xb)));
        acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sv, dx), acc[m]);
        off[m] = _mm_fmadd_ps(cv, _mm_loadu_ps(X->xs + 2 * (m * nxb + xb)), off[m]);
    }
}

/* Each row's sums are those row1 makes, to the bit: the pairs of units alternate between two
   accumulators (pair p into acc[p & 1]) as row1's do, and the two are added at the end in row1's
   order, so a row of x gives the same result alone (row1) or in a tile of any size -- a token's
   output does not depend on the batch it was computed in (the serving engine's steps, speculative
   verification against plain decoding). */
static inline __attribute__((always_inline)) void tile512(const int t, const uint8_t* row, const xq_t* X,
                                                          float* res, const int mt) {
    if (own_rows(t, &row, 1, X, res, mt)) return;
    const int64_t nxb = X->K / 32, bytes = blk_bytes(t);
    __m512 acc[2][MR];
    __m128 off[2][MR];
    for (int m = 0; m < mt; m++) {
        acc[0][m] = acc[1][m] = _mm512_setzero_ps(), off[0][m] = off[1][m] = _mm_setzero_ps();
        res[m] = 0.0f;
    }
    if (blk_weights(t) == 32) {
        int64_t b = 0;
        for (; b + 1 < nxb; b += 2) {
            const int a = (b / 2) & 1;
            scl_t s0, s1;
            prep(t, row + b * bytes, &s0);
            prep(t, row + (b + 1) * bytes, &s1);
            pair_rows(t, unit(t, row + b * bytes, 0), unit(t, row + (b + 1) * bytes, 0), two(s0.s[0], s1.s[0]),
                      two(s0.c[0], s1.c[0]), X, b, acc[a], off[a], mt);
        }
        if (b < nxb) {                    /* an odd last block: the 256-bit unit, row by row */
            scl_t st;
            const uint8_t* B = row + b * bytes;
            prep(t, B, &st);
            const codes_t u = unit(t, B, 0);
            UNIT_SCALES(t, st, 0)
            for (int m = 0; m < mt; m++)
                res[m] = hsum(unit_row(t, u, S, C, X->q + m * X->K + 32 * b, X->d[m * nxb + b],
                                       X->xs + 2 * (m * nxb + b), _mm256_setzero_ps()));
        }
    } else {
        for (int64_t b = 0; b < nxb / 8; b++) {
            const uint8_t* B = row + b * bytes;
            scl_t st;
            prep(t, B, &st);
            for (int j = 0; j < 8; j += 2)
                pair_rows(t, unit(t, B, j), unit(t, B, j + 1), pick(t, st.s, j), pick(t, st.c, j), X, 8 * b + j,
                          acc[(j / 2) & 1], off[(j / 2) & 1], mt);
        }
    }
    for (int m = 0; m < mt; m++) {
        const __m128 o = _mm_add_ps(off[0][m], off[1][m]);
        const __m128 o2 = _mm_add_ps(o, _mm_movehl_ps(o, o));
        res[m] += _mm512_reduce_add_ps(_mm512_add_ps(acc[0][m], acc[1][m])) +
                  _mm_cvtss_f32(_mm_add_ss(o2, _mm_movehdup_ps(o2)));
    }
}
#define TILE tile512
#else
#define TILE tile_any
#endif
#if defined(QG_SIMD) && !defined(QG_ROW1)
#define TILE_PREFETCHES(t) tile8_type(t)      /* tile8 asks for its groups' bytes itself */
#else
#define TILE_PREFETCHES(t) 0
#endif

/* At M = 1 the rows of W read one after the other (AVX2, generic, and the types without rows of their
   own) each ask for the bytes ROW_AHEAD past their start, about 5-9 rows ahead: with the hardware
   prefetcher alone the loads of W were where the AVX2 rows waited (perf: the hottest instructions
   were the loads of the codes and the fp16 scale), and a 4-bit token took 1.08-1.19x longer, a Q8_0
   one 1.6x (avx2 variant on a Xeon, Llama-134M decode, 6 alternated rounds; 2048 bytes gave the same
   to within 4%). A prefetch never faults, so the last rows may ask past the end of W. tile8 asks
   for each group's bytes itself, one line per unit: perf put 30% of the AVX2 Q8_0 rows' samples on
   the burst of 13 prefetches at a row's start, and spreading them made tokens ~5% shorter (Q8_0,
   Q4_K, Q4_1, SmolLM2; 4 alternated rounds). */
#define ROW_AHEAD 4096

#if defined(QG_SIMD) && !defined(QG_ROW1)
/* Q4_0, Q4_1, Q8_0, Q4_K and Q6_K on AVX2 read from their blocks (MINILLM_TILES=0 or row_tiles False:
   by default the row tiles of qtiles.c take these products, 1.3-1.7x shorter decode tokens on the Xeon),
   any mt rows of x against one row of W, in groups of 8 units (a
   K-quant super-block, or 8 blocks of 32: a row's last group may hold fewer). A group's scales are
   made once per row of x, vectorised: the 8 unit scales s d_x (Q6_K: d d_x, its int8 scales per 16
   weights going into the integer dot as madd's pair weights, exact: |sum| < 2^23) wait in a small
   buffer from which each unit broadcasts its own with a load; the offsets (Q4_0's -8 d, Q4_1's m,
   Q4_K's -dmin m, Q6_K's -32 d sc; Q8_0 has none, its signed codes go through the sign trick, |w| .
   (x with w's sign)) meet x's half sums in two FMAs per group. The 32-weight blocks'
   fp16 headers come in as eight scalar loads per group. Per unit and row of x then: the codes (2-4 byte
   operations), maddubs, madd, convert, one FMA. The kernels before it took 3-6 operations more per
   unit, by count (tile()'s per-unit scale and offset vectors; for Q4_0 and Q4_1 a per-block scalar
   scale product, and Q4_0's codes signed through the sign trick). Each row of x
   takes the same operations whatever mt is, so a result does not depend on the rows beside it. */
static inline int bytes_per_unit(int t) { return blk_weights(t) == 32 ? blk_bytes(t) : blk_bytes(t) / 8; }
static inline int tile8_type(int t) { return t == T_Q4_0 || t == T_Q4_1 || t == T_Q8_0 || t == T_Q4_K || t == T_Q6_K; }

/* unit j's codes of group G (n units) as 32 unsigned bytes in x's order, and madd's weights */
static inline __attribute__((always_inline)) __m256i unit8(const int t, const uint8_t* G, int j, __m256i D_lo,
                                                           __m256i D_hi, __m256i* wm) {
    const __m256i lo4 = _mm256_set1_epi8(0xF);
    *wm = _mm256_set1_epi16(1);
    if (t == T_Q8_0) return _mm256_loadu_si256((const __m256i*)(G + j * blk_bytes(t) + 2));   /* signed */
    if (t == T_Q4_0 || t == T_Q4_1) {     /* 16 bytes: low nibbles weights 0-15, high 16-31 */
        const __m128i v = _mm_loadu_si128((const __m128i*)(G + j * blk_bytes(t) + (t == T_Q4_0 ? 2 : 4)));
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo4);
    }
    if (t == T_Q4_K) {                    /* unit pair j / 2: low nibbles unit 2p, high 2p + 1 */
        const __m256i v = _mm256_loadu_si256((const __m256i*)(G + 16 + 32 * (j / 2)));
        return _mm256_and_si256(j & 1 ? _mm256_srli_epi16(v, 4) : v, lo4);
    }
    const int h = j / 4, r = j % 4;       /* Q6_K: unit j = 4 h + r */
    const __m256i ql = _mm256_loadu_si256((const __m256i*)(G + 64 * h + 32 * (r & 1)));
    const __m256i qh = _mm256_loadu_si256((const __m256i*)(G + 128 + 32 * h));
    const __m256i lo = _mm256_and_si256(r >> 1 ? _mm256_srli_epi16(ql, 4) : ql, lo4);
    const __m256i hi = _mm256_and_si256(r == 3 ? _mm256_srli_epi16(qh, 2) : _mm256_slli_epi16(qh, 4 - 2 * r),
                                        _mm256_set1_epi8(0x30));
    const int k = 2 * (j % 2) + 4 * (j / 4);     /* sc_2j in words 0-7 (weights 0-15), sc_2j+1 in 8-15 */
    *wm = _mm256_permutevar8x32_epi32((j / 2) % 2 ? D_hi : D_lo, _mm256_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1));
    return _mm256_or_si256(lo, hi);
}

/* group g of a row (n units; n == 8 is a constant in the full groups' call, so only a short last
   group masks its loads of x's side) into the accumulators of mt rows of x */
static inline __attribute__((always_inline)) void group8(const int t, const uint8_t* row, int64_t g, const int n,
                                                         const xq_t* X, __m256 (*acc)[2], __m256* off, const int mt) {
    const int64_t nxb = X->K / 32, bytes = blk_bytes(t);
    const uint8_t* G = row + g * (blk_weights(t) == 32 ? 8 * bytes : bytes);
    const __m256i dup_lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), dup_hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 s, c0, c1;              /* s: W's factor of the 8 unit scales; c0, c1: offsets of x's halves 0-7, 8-15 */
    __m256i sc16 = _mm256_setzero_si256();
    if (t == T_Q6_K) {             /* scales[16] int8 at 192, d at 208: offsets -32 d sc per 16 weights */
        const __m128i v = _mm_loadu_si128((const __m128i*)(G + 192));
        s = _mm256_set1_ps(h2f(G + 208));
        const __m256 m32 = _mm256_mul_ps(s, _mm256_set1_ps(-32.0f));
        c0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), m32);
        c1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8))), m32);
        sc16 = _mm256_cvtepi8_epi16(v);
    } else {                       /* one offset c per unit, against both halves' sums */
        __m256 c;
        if (t == T_Q4_K) {
            const __m128i v = k4_scales_mins_128(G + 4);          /* 8 scales, 8 mins */
            uint32_t hd;
            memcpy(&hd, G, 4);
            const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)hd));             /* d, dmin */
            s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_broadcastss_ps(dm));
            c = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))),
                              _mm256_broadcastss_ps(_mm_sub_ps(_mm_setzero_ps(), _mm_movehdup_ps(dm))));
        } else {                   /* Q4_0, Q4_1, Q8_0: the blocks' first 4 bytes, d (and m) */
            uint32_t w[8];         /* scalar loads: one vpgatherdd made tokens 10% longer (Xeon) */
            for (int j = 0; j < 8; j++) {
                w[j] = 0;
                if (j < n) memcpy(&w[j], G + j * bytes, 4);
            }
            const __m256i h = _mm256_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3], (int)w[4], (int)w[5],
                                                (int)w[6], (int)w[7]);
            const __m256i dm = _mm256_permute4x64_epi64(                      /* d0-7 | m0-7 as fp16 */
                _mm256_packus_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0xFFFF)), _mm256_srli_epi32(h, 16)), 0xD8);
            s = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
            c = t == T_Q4_1 ? _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1))     /* Q8_0: c unused */
                            : _mm256_mul_ps(s, _mm256_set1_ps(-8.0f));
        }
        c0 = _mm256_permutevar8x32_ps(c, dup_lo);
        c1 = _mm256_permutevar8x32_ps(c, dup_hi);
    }
    float sb[MR][8] __attribute__((aligned(32)));      /* per row of x: the 8 unit scales */
    for (int m = 0; m < mt; m++) {
        const float* dx = X->d + m * nxb + 8 * g, *xs = X->xs + 2 * (m * nxb + 8 * g);
        if (n == 8) {
            _mm256_store_ps(sb[m], _mm256_mul_ps(s, _mm256_loadu_ps(dx)));
            if (t == T_Q8_0) continue;
            off[m] = _mm256_fmadd_ps(c0, _mm256_loadu_ps(xs), off[m]);
            off[m] = _mm256_fmadd_ps(c1, _mm256_loadu_ps(xs + 8), off[m]);
        } else {                   /* nothing read past the row's blocks */
            _mm256_store_ps(sb[m], _mm256_mul_ps(s, _mm256_maskload_ps(dx, live)));
            if (t == T_Q8_0) continue;
            off[m] = _mm256_fmadd_ps(c0, _mm256_maskload_ps(xs, _mm256_permutevar8x32_epi32(live, dup_lo)), off[m]);
            off[m] = _mm256_fmadd_ps(c1, _mm256_maskload_ps(xs + 8, _mm256_permutevar8x32_epi32(live, dup_hi)), off[m]);
        }
    }
    /* Q6_K: dword k of D_lo is (sc_k, sc_k) for k = 0-3, 8-11; of D_hi for k = 4-7, 12-15 */
    const __m256i D_lo = _mm256_unpacklo_epi16(sc16, sc16), D_hi = _mm256_unpackhi_epi16(sc16, sc16);
#pragma GCC unroll 8
    for (int j = 0; j < n; j++) {
        if (mt == 1 && 64 * j < 8 * bytes_per_unit(t))   /* one row of x: the group's bytes ROW_AHEAD on */
            __builtin_prefetch(G + ROW_AHEAD + 64 * j, 0, 3);
        __m256i wm;
        const __m256i w = unit8(t, G, j, D_lo, D_hi, &wm);
        const __m256i u = t == T_Q8_0 ? _mm256_sign_epi8(w, w) : w;     /* Q8_0: |w| . (x with w's sign) */
        for (int m = 0; m < mt; m++) {
            __m256i xv = _mm256_loadu_si256((const __m256i*)(X->q + m * X->K + 32 * (8 * g + j)));
            if (t == T_Q8_0) xv = _mm256_sign_epi8(xv, w);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, xv), wm);
            acc[m][j & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&sb[m][j]), acc[m][j & 1]);
        }
    }
}

static inline __attribute__((always_inline)) void tile8(const int t, const uint8_t* row, const xq_t* X,
                                                        float* res, const int mt) {
    const int64_t nxb = X->K / 32;
    __m256 acc[MR][2], off[MR];
    for (int m = 0; m < mt; m++) acc[m][0] = acc[m][1] = off[m] = _mm256_setzero_ps();
    int64_t g = 0;
    for (; 8 * g + 8 <= nxb; g++) group8(t, row, g, 8, X, acc, off, mt);
    if (8 * g < nxb) group8(t, row, g, (int)(nxb - 8 * g), X, acc, off, mt);
    for (int m = 0; m < mt; m++) res[m] = hsum(_mm256_add_ps(_mm256_add_ps(acc[m][0], acc[m][1]), off[m]));
}
#endif

#if !defined(QG_ROW1)
/* TILE below AVX-512 VNNI: tile8 for Q4_0, Q4_1, Q8_0, Q4_K and Q6_K on AVX2, tile otherwise (t constant:
   one branch) */
static inline __attribute__((always_inline)) void tile_any(const int t, const uint8_t* row, const xq_t* X,
                                                           float* res, const int mt) {
#if defined(QG_SIMD)
    if (tile8_type(t)) {
        tile8(t, row, X, res, mt);
        return;
    }
#endif
    tile(t, row, X, res, mt);
}
#endif

/* out[m * ldo + i] = W[n0 + i] . x[m], all M rows of x, rows n0 .. n0 + n - 1 of W; t constant */
static inline __attribute__((always_inline)) void rows_t(const int t, float* out, int64_t ldo, const xq_t* X0,
                                                         int64_t M, int64_t n0, int64_t n, const uint8_t* w) {
    const int64_t row_bytes = X0->K / blk_weights(t) * blk_bytes(t), nxb = X0->K / 32;
#if defined(QG_ROW1)
    if (M == 1 && has_own_rows(t)) {                   /* n rows as STREAMS runs of a quarter */
        const int64_t q = (n + STREAMS - 1) / STREAMS;
        rows_runs(t, out, X0, n0, q, q, n0 + n, w, row_bytes);
        return;
    }
#endif
    float res[MR];
    for (int64_t i = 0; i < n; i++) {
        const uint8_t* row = w + (n0 + i) * row_bytes;
        if (M == 1 && !TILE_PREFETCHES(t))     /* one row of x: ask for the row ROW_AHEAD bytes on (above) */
            for (int64_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(row + ROW_AHEAD + o, 0, 3);
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            const xq_t X = {X0->q + m0 * X0->K, X0->d + m0 * nxb, X0->xs + m0 * nxb * 2, X0->K};
            const int64_t mt = M - m0 < MR ? M - m0 : MR;
#if defined(QG_ROW1)
            if (mt == 1) {
                out[m0 * ldo + i] = row1(t, row, &X);
                continue;
            }
#endif
            switch (mt) {
                case 1: TILE(t, row, &X, res, 1); break;
                case 2: TILE(t, row, &X, res, 2); break;
                case 3: TILE(t, row, &X, res, 3); break;
                case 4: TILE(t, row, &X, res, 4); break;
                case 5: TILE(t, row, &X, res, 5); break;
                case 6: TILE(t, row, &X, res, 6); break;
                case 7: TILE(t, row, &X, res, 7); break;
                default: TILE(t, row, &X, res, 8);
            }
            for (int64_t m = 0; m < mt; m++) out[(m0 + m) * ldo + i] = res[m];
        }
    }
}

#define ROWS_OF(T) \
    static void rows_##T(float* o, int64_t ldo, const xq_t* X, int64_t M, int64_t n0, int64_t n, const uint8_t* w) { \
        rows_t(T, o, ldo, X, M, n0, n, w); \
    }
ROWS_OF(T_Q4_0) ROWS_OF(T_Q4_1) ROWS_OF(T_Q5_0) ROWS_OF(T_Q5_1) ROWS_OF(T_Q8_0)
ROWS_OF(T_Q2_K) ROWS_OF(T_Q3_K) ROWS_OF(T_Q4_K) ROWS_OF(T_Q5_K) ROWS_OF(T_Q6_K)

typedef void (*rows_fn)(float*, int64_t, const xq_t*, int64_t, int64_t, int64_t, const uint8_t*);
static rows_fn rows_for(int32_t t) {
    switch (t) {
        case T_Q4_0: return rows_T_Q4_0; case T_Q4_1: return rows_T_Q4_1; case T_Q5_0: return rows_T_Q5_0;
        case T_Q5_1: return rows_T_Q5_1; case T_Q8_0: return rows_T_Q8_0; case T_Q2_K: return rows_T_Q2_K;
        case T_Q3_K: return rows_T_Q3_K; case T_Q4_K: return rows_T_Q4_K; case T_Q5_K: return rows_T_Q5_K;
        case T_Q6_K: return rows_T_Q6_K; default: return NULL;
    }
}

static xq_t scratch_view(const void* scratch, int64_t M, int64_t K) {
    const float* d = (const float*)((const char*)scratch + q_bytes(M, K));
    return (xq_t){(const int8_t*)scratch, d, d + M * K / 32, K};
}

/* For decode.c (parts.inc): serial rows n0..n0+n-1 against the M rows of x prepared in scratch */
void qgemm_rows(int32_t type, float* out, int64_t ldo, const void* scratch, int64_t M, int64_t K, int64_t n0,
                int64_t n, const uint8_t* w) {
    const xq_t X = scratch_view(scratch, M, K);
    if (type & GGML_TILES) {
        qtiles_rows(type & ~GGML_TILES, out, ldo, X.q, X.d, X.xs, M, K, n0, n, w);
        return;
    }
    const rows_fn f = rows_for(type);
    if (f) f(out, ldo, &X, M, n0, n, w);
}

void qgemm_tiles_runs(int32_t type, float* out, const void* scratch, int64_t K, int64_t g, int64_t gap,
                      int64_t end, const uint8_t* w) {
    const xq_t X = scratch_view(scratch, 1, K);
    qtiles_runs(type & ~GGML_TILES, out, X.q, X.d, X.xs, K, g, gap, end, w);
}

int32_t qgemm_runs(int32_t type) {
#if defined(QG_ROW1)
    return has_own_rows(type);
#else
    (void)type;
    return 0;
#endif
}

/* For decode.c at one row of x: rows n0 + j gap .. + count - 1 of W (j < 4), cut at row end, out[r - n0] =
   W[r] . x (rows_runs; elsewhere than AVX-512 VNNI the rows one by one) */
void qgemm_rows_runs(int32_t type, float* out, const void* scratch, int64_t K, int64_t n0, int64_t count,
                     int64_t gap, int64_t end, const uint8_t* w) {
    const rows_fn f = rows_for(type);
    if (!f) return;
    const xq_t X = scratch_view(scratch, 1, K);
#if defined(QG_ROW1)
    const int64_t row_bytes = K / blk_weights(type) * blk_bytes(type);
    switch (type) {   /* t constant in each call, as rows_t's are */
        case T_Q4_0: rows_runs(T_Q4_0, out, &X, n0, count, gap, end, w, row_bytes); return;
        case T_Q4_1: rows_runs(T_Q4_1, out, &X, n0, count, gap, end, w, row_bytes); return;
        case T_Q8_0: rows_runs(T_Q8_0, out, &X, n0, count, gap, end, w, row_bytes); return;
        case T_Q4_K: rows_runs(T_Q4_K, out, &X, n0, count, gap, end, w, row_bytes); return;
        case T_Q6_K: rows_runs(T_Q6_K, out, &X, n0, count, gap, end, w, row_bytes); return;
        default: break;
    }
#endif
    int64_t len[STREAMS];
    run_lengths(n0, count, gap, end, len);
    for (int j = 0; j < STREAMS; j++)
        if (len[j] > 0) f(out + j * gap, 1, &X, 1, n0 + j * gap, len[j], w);
}

int32_t qgemm(int32_t type, float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    const int tiles = (type & GGML_TILES) != 0;
    const int32_t base = type & ~GGML_TILES;
    const rows_fn f = rows_for(base);
    if (!f || M < 0 || N < 0 || K <= 0 || K % blk_weights(base) || (tiles && !qtiles_usable(base))) return -1;
    if (M == 0 || N == 0) return 0;
    void* scratch = aligned_alloc(64, (size_t)((qgemm_scratch_bytes(M, K) + 63) / 64 * 64));
    if (!scratch) return -2;
    qgemm_prepare_x(x, M, K, scratch);
    const xq_t X = scratch_view(scratch, M, K);
    /* one region, each thread one contiguous half of the rows of W (static: the split is known up
       front, and neighbouring rows stream through the same prefetcher) */
#pragma omp parallel if (N * K >= PAR_MIN)
    {
#if defined(_OPENMP)
        const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
        const int nt = 1, tid = 0;
#endif
        const int64_t per = tiles ? (N + 16 * nt - 1) / (16 * nt) * 16 : (N + nt - 1) / nt;  /* whole groups */
        const int64_t a = tid * per < N ? tid * per : N, b = a + per < N ? a + per : N;
        if (a < b && tiles) qtiles_rows(base, out + a, N, X.q, X.d, X.xs, M, K, a, b - a, w);
        else if (a < b) f(out + a, N, &X, M, a, b - a, w);
    }
    free(scratch);
    return 0;
}

/* Each thread's share is read as PROBE_STREAMS runs side by side, four lines of each per step, with
   a software prefetch PROBE_AHEAD bytes ahead in each: the fastest way to read memory found on the
   hosts here (~16 GB/s for one run per thread, ~22 GB/s for 4-8 runs, 2 threads, Xeon), so the
   ceiling it sets is not one a kernel could pass by reading better. */
#define PROBE_STREAMS 8
#define PROBE_AHEAD 1024
int64_t memory_read(const uint8_t* p, int64_t n, int32_t threads) {
    int64_t total = 0;
#if defined(_OPENMP)
    const int nt = threads > 0 ? threads : omp_get_max_threads();
#else
    const int nt = 1;
    (void)threads;
#endif
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
#if defined(_OPENMP)
        const int t = omp_get_thread_num(), k = omp_get_num_threads();
#else
        const int t = 0, k = 1;
#endif
        const int64_t lines = n / 64, per = (lines + k - 1) / k;
        const int64_t a = t * per, b = a + per < lines ? a + per : lines;
#if defined(__AVX512F__)
        const int64_t run = b > a ? (b - a) / PROBE_STREAMS / 4 * 4 : 0;   /* lines per run */
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t i = 0; i < run; i += 4)
            for (int r = 0; r < PROBE_STREAMS; r++) {
                const uint8_t* q = p + 64 * (a + r * run + i);
                _mm_prefetch((const char*)(q + PROBE_AHEAD), _MM_HINT_T0);
                _mm_prefetch((const char*)(q + PROBE_AHEAD + 64), _MM_HINT_T0);
                _mm_prefetch((const char*)(q + PROBE_AHEAD + 128), _MM_HINT_T0);
                _mm_prefetch((const char*)(q + PROBE_AHEAD + 192), _MM_HINT_T0);
                s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void*)q));
                s1 = _mm512_add_epi64(s1, _mm512_load_si512((const void*)(q + 64)));
                s2 = _mm512_add_epi64(s2, _mm512_load_si512((const void*)(q + 128)));
                s3 = _mm512_add_epi64(s3, _mm512_load_si512((const void*)(q + 192)));
            }
        for (int64_t i = a + PROBE_STREAMS * run; i < b; i++)      /* the lines past the runs */
            s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void*)(p + 64 * i)));
        total += _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
#elif defined(__AVX2__)
        const int64_t run = b > a ? (b - a) / PROBE_STREAMS : 0;         /* lines per run */
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        for (int64_t i = 0; i < run; i++)
            for (int r = 0; r < PROBE_STREAMS; r++) {
                const uint8_t* q = p + 64 * (a + r * run + i);
                _mm_prefetch((const char*)(q + PROBE_AHEAD), _MM_HINT_T0);
                s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i*)q));
                s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i*)(q + 32)));
            }
        for (int64_t i = a + PROBE_STREAMS * run; i < b; i++) {
            s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i*)(p + 64 * i)));
            s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i*)(p + 64 * i + 32)));
        }
        int64_t v[4];
        _mm256_storeu_si256((__m256i*)v, _mm256_add_epi64(s0, s1));
        total += v[0] + v[1] + v[2] + v[3];
#else
        int64_t s = 0;
        for (int64_t i = 8 * a; i < 8 * b; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            s += v;
        }
        total += s;
#endif
    }
    return total;
}
