/* csrc/ggml_blocks.c -- fused dequantize-matmul for ggml's block types, see ggml_blocks.h.
   Reference: minillm/quant/ggml_blocks.py (one decoder per type, the same formulas) and
   GGMLLinear.matmul_reference.

   Two stages, one of them per type:
   1. decode: a run of blocks -> float32 weights, the C twin of the NumPy dequantizer (ggml's
      dequantize_row_*): codes unpacked to bytes with SSE2 masks and shifts, then widened, converted
      and scaled 16 at a time (affine16: AVX-512, AVX2, or scalar).
   2. dot: the decoded run (<= CHUNK floats, in L1) against up to MT rows of x, with MT x 2 vector
      accumulators kept in registers across the whole row; AVX-512 (16 lanes), AVX2 (8 lanes) or
      scalar code, chosen at compile time (VEC below), written once.
   So a weight is read from memory once per tile of 8 rows of x and never expanded beyond 1 KB.
   Results equal x @ dequantize(W).T up to float32 summation order (and FMA contraction of d*q + m). */
#include "ggml_blocks.h"
#include "parts.inc"
#include "half.inc"
#include "qgemm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>   /* x86-64: SSE2 always, AVX2 / AVX-512 / F16C where -march has them */
#endif

#define QK_K 256
#define CHUNK 256          /* weights decoded per step: one K-quant super-block, 8 blocks of 32, 256 halves */
#define MT 8               /* rows of x per tile */
/* below this many weights a matrix is not worth waking a second thread for */
#define PAR_MIN ((int64_t)1 << 18)

typedef uint16_t half_t;
/* ggml-common.h's structs; sizes must equal the numpy dtypes of minillm/quant/formats.py */
typedef struct { half_t d; uint8_t qs[16]; } blk_q4_0;
typedef struct { half_t d, m; uint8_t qs[16]; } blk_q4_1;
typedef struct { half_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;
typedef struct { half_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;
typedef struct { half_t d; int8_t qs[32]; } blk_q8_0;
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; half_t d, dmin; } blk_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; half_t d; } blk_q3_K;
typedef struct { half_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } blk_q4_K;
typedef struct { half_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } blk_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; half_t d; } blk_q6_K;
_Static_assert(sizeof(blk_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(blk_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(blk_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(blk_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(blk_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(blk_q2_K) == 84, "block_q2_K size");
_Static_assert(sizeof(blk_q3_K) == 110, "block_q3_K size");
_Static_assert(sizeof(blk_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(blk_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(blk_q6_K) == 210, "block_q6_K size");

static inline float h2f(half_t h) { return half_to_float(h); }  /* IEEE half -> float, exact */

/* ------------------------------------------------------------------ SIMD primitives
   Each decoder first unpacks its codes to one unsigned byte per weight (byte operations, 16 at a time
   with SSE2 on x86-64, else scalar), then affine16 turns them into floats, 16 weights sharing a
   scale a and offset c: w = a q + c. Every type fits that form (a signed code q - z is the unsigned q
   with c = -z a: exact, since a q, z a and their difference all fit float32's 24-bit mantissa). */
#if defined(__AVX512F__)
#define ISA_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define ISA_AVX2 1
#endif

/* y[16i + l] = a[i] q[16i + l] + c[i] for i < n16, l < 16 */
static inline void affine16(const uint8_t* restrict q, const float* a, const float* c, int n16, float* restrict y) {
    for (int i = 0; i < n16; i++) {
#if defined(ISA_AVX512)
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + 16 * i))));
        _mm512_storeu_ps(y + 16 * i, _mm512_fmadd_ps(v, _mm512_set1_ps(a[i]), _mm512_set1_ps(c[i])));
#elif defined(ISA_AVX2)
        const __m256 A = _mm256_set1_ps(a[i]), C = _mm256_set1_ps(c[i]);
        for (int h = 0; h < 16; h += 8) {
            const __m128i b = _mm_loadl_epi64((const __m128i*)(q + 16 * i + h));
            const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
            _mm256_storeu_ps(y + 16 * i + h, _mm256_fmadd_ps(v, A, C));
        }
#else
        for (int l = 0; l < 16; l++) y[16 * i + l] = a[i] * (float)q[16 * i + l] + c[i];
#endif
    }
}

/* byte operations on n (a multiple of 16) bytes: dst = (src >> shift) & mask */
static inline void bits_get(const uint8_t* restrict src, int shift, uint8_t mask, int n, uint8_t* restrict dst) {
#if defined(__SSE2__)
    const __m128i M = _mm_set1_epi8((char)mask);
    for (int k = 0; k < n; k += 16)  /* 16-bit shifts: the mask drops the bits that cross bytes */
        _mm_storeu_si128((__m128i*)(dst + k),
                         _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i*)(src + k)), shift), M));
#else
    for (int k = 0; k < n; k++) dst[k] = (uint8_t)((src[k] >> shift) & mask);
#endif
}

/* dst |= ((src >> t) & 1) << to, for n (a multiple of 16) bytes: a high bit joins the codes */
static inline void bit_or(const uint8_t* restrict src, int t, int to, int n, uint8_t* restrict dst) {
#if defined(__SSE2__)
    const __m128i one = _mm_set1_epi8(1);
    for (int k = 0; k < n; k += 16) {
        const __m128i b = _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i*)(src + k)), t), one);
        __m128i* d = (__m128i*)(dst + k);
        _mm_storeu_si128(d, _mm_or_si128(_mm_loadu_si128(d), _mm_slli_epi16(b, to)));
    }
#else
    for (int k = 0; k < n; k++) dst[k] |= (uint8_t)(((src[k] >> t) & 1) << to);
#endif
}

/* the 32 bits of a little-endian u32 -> 0 or 1 << to in bytes 0..31 (Q5_0 / Q5_1's qh) */
static inline void u32_bits(const uint8_t* qh4, int to, uint8_t* q) {
    for (int i = 0; i < 4; i++) {  /* a byte's 8 bits -> 8 bytes: select bit i in byte i, then test != 0 */
        uint64_t r = ((uint64_t)qh4[i] * 0x0101010101010101ULL) & 0x8040201008040201ULL;
        r = (((r + 0x7F7F7F7F7F7F7F7FULL) >> 7) & 0x0101010101010101ULL) << to;
        uint64_t v;
        memcpy(&v, q + 8 * i, 8);
        v |= r;
        memcpy(q + 8 * i, &v, 8);
    }
}

/* ------------------------------------------------------------------ stage 1: decoders
   dec_T(src, y, nb): nb blocks at src -> y[0 .. nb * block), the formulas of ggml_blocks.py */
static void dec_f16(const uint8_t* restrict src, float* restrict y, int64_t nb) {
    halves_to_floats(y, (const uint16_t*)src, nb);
}

static void dec_bf16(const uint8_t* restrict src, float* restrict y, int64_t nb) {
    const uint16_t* h = (const uint16_t*)src;
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= nb; i += 16) {  /* bfloat16 is the top half of a float32 */
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(h + i)));
        _mm512_storeu_si512((void*)(y + i), _mm512_slli_epi32(v, 16));
    }
#elif defined(__AVX2__)
    for (; i + 8 <= nb; i += 8) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(h + i)));
        _mm256_storeu_si256((__m256i*)(y + i), _mm256_slli_epi32(v, 16));
    }
#endif
    for (; i < nb; i++) {
        const uint32_t u = (uint32_t)h[i] << 16;
        memcpy(y + i, &u, 4);
    }
}

/* The block types: unpack_T(src, nb, q, a, c) unpacks nb blocks (a run of at most CHUNK weights) into
   codes q (one byte per weight) and per 16 weights the scale a and offset c, so w = a q + c. */
#define FILL2(p, i, v) ((p)[2 * (i)] = (p)[2 * (i) + 1] = (v))
#define UNPACK_ARGS const uint8_t* restrict src, int64_t nb, uint8_t* restrict q, float* restrict a, float* restrict c

static void unpack_q8_0(UNPACK_ARGS) {
    const blk_q8_0* B = (const blk_q8_0*)src;
    for (int64_t b = 0; b < nb; b++, q += 32) {
        const float d = h2f(B[b].d);
        FILL2(a, b, d);
        FILL2(c, b, -128.0f * d);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)(B[b].qs[j] ^ 0x80);   /* q + 128 */
    }
}

/* Q4_0 / Q4_1: byte j holds weight j (low nibble) and j + 16 (high) */
static void unpack_q4_0(UNPACK_ARGS) {
    const blk_q4_0* B = (const blk_q4_0*)src;
    for (int64_t b = 0; b < nb; b++, q += 32) {
        const float d = h2f(B[b].d);
        FILL2(a, b, d);
        FILL2(c, b, -8.0f * d);
        bits_get(B[b].qs, 0, 0xF, 16, q);
        bits_get(B[b].qs, 4, 0xF, 16, q + 16);
    }
}

static void unpack_q4_1(UNPACK_ARGS) {
    const blk_q4_1* B = (const blk_q4_1*)src;
    for (int64_t b = 0; b < nb; b++, q += 32) {
        FILL2(a, b, h2f(B[b].d));
        FILL2(c, b, h2f(B[b].m));
        bits_get(B[b].qs, 0, 0xF, 16, q);
        bits_get(B[b].qs, 4, 0xF, 16, q + 16);
    }
}

/* Q5_0 / Q5_1: as Q4, plus bit j of the 32-bit qh as bit 4 of weight j */
static void unpack_q5_0(UNPACK_ARGS) {
    const blk_q5_0* B = (const blk_q5_0*)src;
    for (int64_t b = 0; b < nb; b++, q += 32) {
        const float d = h2f(B[b].d);
        FILL2(a, b, d);
        FILL2(c, b, -16.0f * d);
        bits_get(B[b].qs, 0, 0xF, 16, q);
        bits_get(B[b].qs, 4, 0xF, 16, q + 16);
        u32_bits(B[b].qh, 4, q);
    }
}

static void unpack_q5_1(UNPACK_ARGS) {
    const blk_q5_1* B = (const blk_q5_1*)src;
    for (int64_t b = 0; b < nb; b++, q += 32) {
        FILL2(a, b, h2f(B[b].d));
        FILL2(c, b, h2f(B[b].m));
        bits_get(B[b].qs, 0, 0xF, 16, q);
        bits_get(B[b].qs, 4, 0xF, 16, q + 16);
        u32_bits(B[b].qh, 4, q);
    }
}

/* 2-bit fields: in each half h of 128 weights, weight 32s + l is bits 2s, 2s+1 of src[32h + l] */
static inline void crumbs256(const uint8_t* src, uint8_t* q) {
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++) bits_get(src + 32 * h, 2 * s, 3, 32, q + 128 * h + 32 * s);
}

/* Q2_K: sub-block i of 16 has scale d (sc_i & 15) and min dmin (sc_i >> 4). The K-quants are
   called with nb = 1 (a chunk is one super-block). */
static void unpack_q2_K(UNPACK_ARGS) {
    const blk_q2_K* B = (const blk_q2_K*)src;
    (void)nb;
    const float d = h2f(B->d), dmin = h2f(B->dmin);
    for (int i = 0; i < 16; i++) {
        a[i] = d * (float)(B->scales[i] & 0xF);
        c[i] = -(dmin * (float)(B->scales[i] >> 4));
    }
    crumbs256(B->qs, q);
}

/* Q3_K: 2 low bits as Q2_K's; bit t of hmask[l] is the third bit of weight 32t + l, and w =
   d (s_i - 32) (q - 4) with q the 3-bit code (ggml subtracts 4 where the bit is clear). Sixteen
   6-bit scales s_i: low 4 bits in bytes 0..7 (low nibbles: i < 8), high 2 bits in bytes 8..11. */
static void unpack_q3_K(UNPACK_ARGS) {
    const blk_q3_K* B = (const blk_q3_K*)src;
    (void)nb;
    const float d = h2f(B->d);
    const uint8_t* s = B->scales;
    for (int i = 0; i < 16; i++) {
        const int sc = ((s[i % 8] >> (4 * (i / 8))) & 0xF) | (((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4);
        a[i] = d * (float)(sc - 32);
        c[i] = -4.0f * a[i];
    }
    crumbs256(B->qs, q);
    for (int t = 0; t < 8; t++) bit_or(B->hmask, t, 2, 32, q + 32 * t);
}

/* Q4_K / Q5_K: eight (scale, min) pairs of 6 bits in 12 bytes (ggml's get_scale_min_k4), one per
   sub-block j of 32: the low (j even) or high (j odd) nibbles of qs[32 (j / 2) ..] */
static inline void k4_unpack(const uint8_t* s, float d, float dmin, const uint8_t* qs, uint8_t* q, float* a, float* c) {
    for (int j = 0; j < 8; j++) {
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        FILL2(a, j, d * (float)sc);
        FILL2(c, j, -(dmin * (float)m));
    }
    for (int i = 0; i < 4; i++) {
        bits_get(qs + 32 * i, 0, 0xF, 32, q + 64 * i);
        bits_get(qs + 32 * i, 4, 0xF, 32, q + 64 * i + 32);
    }
}

static void unpack_q4_K(UNPACK_ARGS) {
    const blk_q4_K* B = (const blk_q4_K*)src;
    (void)nb;
    k4_unpack(B->scales, h2f(B->d), h2f(B->dmin), B->qs, q, a, c);
}

static void unpack_q5_K(UNPACK_ARGS) {
    const blk_q5_K* B = (const blk_q5_K*)src;
    (void)nb;
    k4_unpack(B->scales, h2f(B->d), h2f(B->dmin), B->qs, q, a, c);
    for (int j = 0; j < 8; j++) bit_or(B->qh, j, 4, 32, q + 32 * j);   /* bit j of qh[l]: sub-block j */
}

/* Q6_K: per half h of 128 weights, weight 32r + l takes its low 4 bits from ql (r = 0, 1: low
   nibbles of ql[64h + 32r + l]; r = 2, 3: high nibbles of ql[64h + 32(r - 2) + l]) and its high 2
   from bits 2r of qh[32h + l]; w = d sc_i (q - 32) with int8 sc_i per sub-block i of 16 */
static void unpack_q6_K(UNPACK_ARGS) {
    const blk_q6_K* B = (const blk_q6_K*)src;
    (void)nb;
    const float d = h2f(B->d);
    for (int i = 0; i < 16; i++) {
        a[i] = d * (float)B->scales[i];
        c[i] = -32.0f * a[i];
    }
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < 4; r++) {
            uint8_t* o = q + 128 * h + 32 * r;
            bits_get(B->ql + 64 * h + 32 * (r % 2), 4 * (r / 2), 0xF, 32, o);
            bit_or(B->qh + 32 * h, 2 * r, 4, 32, o);
            bit_or(B->qh + 32 * h, 2 * r + 1, 5, 32, o);
        }
}

/* ------------------------------------------------------------------ fused one-row dots (AVX-512)
   For the 32-weight block types, decode (M = 1) skips the unpacked codes: each block's 16 bytes
   widen straight into two registers of 16 codes, are converted and multiplied with x, and the block
   scale multiplies their sum once:  x . w_b = d (q . x_b) + c sx_b,  sx_b = the sum of x over the
   block (two x_sums16 entries). Two accumulators per quantity hide the FMA latency, and the blocks
   PREFETCH bytes ahead are requested early: a decode step streams its weights from DRAM. */
#if defined(ISA_AVX512)
#define HAVE_ROW1 1
#define PREFETCH 1024
typedef float (*row1_fn)(const uint8_t* row, const float* x, const float* sx, int64_t nb);

static inline __m512 nib_lo_hi_dot(const uint8_t* qs, const float* x) {  /* sum over 32 nibble codes of q x */
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)qs)), m = _mm512_set1_epi32(0xF);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, m)), hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x)));
}

static float row1_q4_0(const uint8_t* row, const float* x, const float* sx, int64_t nb) {
    const blk_q4_0* B = (const blk_q4_0*)row;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float off0 = 0.0f, off1 = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char*)(B + b) + PREFETCH, _MM_HINT_T0);
        const float d0 = h2f(B[b].d), d1 = h2f(B[b + 1].d);
        acc0 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(d0), acc0);
        acc1 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b + 1].qs, x + 32 * b + 32), _mm512_set1_ps(d1), acc1);
        off0 += d0 * (sx[2 * b] + sx[2 * b + 1]);
        off1 += d1 * (sx[2 * b + 2] + sx[2 * b + 3]);
    }
    for (; b < nb; b++) {
        const float d0 = h2f(B[b].d);
        acc0 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(d0), acc0);
        off0 += d0 * (sx[2 * b] + sx[2 * b + 1]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - 8.0f * (off0 + off1);
}

static float row1_q4_1(const uint8_t* row, const float* x, const float* sx, int64_t nb) {
    const blk_q4_1* B = (const blk_q4_1*)row;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float off0 = 0.0f, off1 = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char*)(B + b) + PREFETCH, _MM_HINT_T0);
        acc0 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(h2f(B[b].d)), acc0);
        acc1 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b + 1].qs, x + 32 * b + 32), _mm512_set1_ps(h2f(B[b + 1].d)), acc1);
        off0 += h2f(B[b].m) * (sx[2 * b] + sx[2 * b + 1]);
        off1 += h2f(B[b + 1].m) * (sx[2 * b + 2] + sx[2 * b + 3]);
    }
    for (; b < nb; b++) {
        acc0 = _mm512_fmadd_ps(nib_lo_hi_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(h2f(B[b].d)), acc0);
        off0 += h2f(B[b].m) * (sx[2 * b] + sx[2 * b + 1]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + off0 + off1;
}

static inline __m512 i8x32_dot(const int8_t* qs, const float* x) {  /* sum over 32 int8 codes of q x */
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)qs)));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(qs + 16))));
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x)));
}

static float row1_q8_0(const uint8_t* row, const float* x, const float* sx, int64_t nb) {
    const blk_q8_0* B = (const blk_q8_0*)row;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    (void)sx;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char*)(B + b) + PREFETCH, _MM_HINT_T0);
        acc0 = _mm512_fmadd_ps(i8x32_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(h2f(B[b].d)), acc0);
        acc1 = _mm512_fmadd_ps(i8x32_dot(B[b + 1].qs, x + 32 * b + 32), _mm512_set1_ps(h2f(B[b + 1].d)), acc1);
    }
    for (; b < nb; b++) acc0 = _mm512_fmadd_ps(i8x32_dot(B[b].qs, x + 32 * b), _mm512_set1_ps(h2f(B[b].d)), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#define ROW1(f) f
#else
typedef void* row1_fn;
#define ROW1(f) NULL
#endif

typedef void (*unpack_fn)(const uint8_t* restrict src, int64_t nb, uint8_t* restrict q, float* restrict a,
                          float* restrict c);
typedef void (*decode_fn)(const uint8_t* restrict src, float* restrict y, int64_t nb);
/* a type: ggml id, weights and bytes per block, either unpack (codes, a, c) or decode (floats), and
   optionally a fused one-row dot */
typedef struct { int32_t type, block, bytes; unpack_fn unpack; decode_fn decode; row1_fn row1; } btype_t;
static const btype_t TYPES[] = {
    {1, 1, 2, NULL, dec_f16, NULL},           {30, 1, 2, NULL, dec_bf16, NULL},
    {2, 32, 18, unpack_q4_0, NULL, ROW1(row1_q4_0)}, {3, 32, 20, unpack_q4_1, NULL, ROW1(row1_q4_1)},
    {6, 32, 22, unpack_q5_0, NULL, NULL},     {7, 32, 24, unpack_q5_1, NULL, NULL},
    {8, 32, 34, unpack_q8_0, NULL, ROW1(row1_q8_0)}, {10, QK_K, 84, unpack_q2_K, NULL, NULL},
    {11, QK_K, 110, unpack_q3_K, NULL, NULL}, {12, QK_K, 144, unpack_q4_K, NULL, NULL},
    {13, QK_K, 176, unpack_q5_K, NULL, NULL}, {14, QK_K, 210, unpack_q6_K, NULL, NULL}};

static const btype_t* find_type(int32_t type, int64_t K) {  /* NULL: unknown type, or K not whole blocks */
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type) return K > 0 && K % TYPES[i].block == 0 ? &TYPES[i] : NULL;
    return NULL;
}

int32_t ggml_block_size(int32_t type, int64_t* weights, int64_t* bytes) {
    const btype_t* T = find_type(type, QK_K);
    if (!T) return -1;
    *weights = T->block;
    *bytes = T->bytes;
    return 0;
}

/* weights k0 .. k0 + len of a row (len <= CHUNK, whole blocks) as floats */
static void dequant_run(const btype_t* T, const uint8_t* row, int64_t k0, int64_t len, float* y) {
    const uint8_t* src = row + k0 / T->block * T->bytes;
    if (T->decode) {
        T->decode(src, y, len / T->block);
        return;
    }
    uint8_t q[CHUNK];
    float a[CHUNK / 16], c[CHUNK / 16];
    T->unpack(src, len / T->block, q, a, c);
    affine16(q, a, c, (int)(len / 16), y);
}

/* ------------------------------------------------------------------ stage 2: dot with rows of x */
#if defined(ISA_AVX512)
typedef __m512 vec_t;
#define VL 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(f) _mm512_set1_ps(f)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VCODES(p) _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p))))
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(v) _mm512_reduce_add_ps(v)
#elif defined(ISA_AVX2)
typedef __m256 vec_t;
#define VL 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(f) _mm256_set1_ps(f)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VCODES(p) _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p))))
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static inline float VSUM(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
typedef float vec_t;
#define VL 1
#define VZERO() 0.0f
#define VSET1(f) (f)
#define VLOAD(p) (*(p))
#define VCODES(p) ((float)*(p))
#define VMUL(a, b) ((a) * (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUM(v) (v)
#endif

/* sx[m * K/16 + i] = sum of x[m, 16i .. 16i + 16): what the offsets c multiply */
static void x_sums16(const float* x, int64_t M, int64_t K, float* sx) {
    for (int64_t i = 0; i < M * (K / 16); i++) {
#if defined(ISA_AVX512)
        sx[i] = _mm512_reduce_add_ps(_mm512_loadu_ps(x + 16 * i));   /* a tree, not a 16-add chain */
#elif defined(ISA_AVX2)
        sx[i] = VSUM(_mm256_add_ps(_mm256_loadu_ps(x + 16 * i), _mm256_loadu_ps(x + 16 * i + 8)));
#else
        float s = 0.0f;
        for (int l = 0; l < 16; l++) s += x[16 * i + l];
        sx[i] = s;
#endif
    }
}

/* res[m] = W[row] . x[m] for m < mt (a constant after inlining: the accumulators stay in registers),
   for the block types:  sum_i a_i (q_i . x_i) + sum_i c_i sx_i  over runs i of 16 weights. The codes
   are widened and converted once for all rows of the tile; two accumulators per row hide the FMA
   latency at mt = 1 (decode). */
static inline __attribute__((always_inline)) void row_tile_q(const btype_t* T, const uint8_t* row, const float* x,
                                                             const float* sx, int64_t K, float* res, const int mt) {
    uint8_t q[CHUNK] __attribute__((aligned(64)));
    float a[CHUNK / 16], c[CHUNK / 16], off[MT];
    vec_t acc[MT][2], offv[MT];
    for (int m = 0; m < mt; m++) acc[m][0] = acc[m][1] = offv[m] = VZERO(), off[m] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        const int64_t len = K - k0 < CHUNK ? K - k0 : CHUNK;
        T->unpack(row + k0 / T->block * T->bytes, len / T->block, q, a, c);
        for (int64_t i = 0; i < len / 16; i += 2) {         /* 32 weights: runs i and i + 1 */
            const vec_t A0 = VSET1(a[i]), A1 = VSET1(a[i + 1]);
            for (int h = 0; h < 32; h += VL) {                /* unrolled: h, and so the accumulator, is constant */
                const vec_t v = VCODES(q + 16 * i + h);
                for (int m = 0; m < mt; m++)
                    acc[m][(h / VL) & 1] = VFMA(VMUL(v, VLOAD(x + m * K + k0 + 16 * i + h)), h < 16 ? A0 : A1,
                                                acc[m][(h / VL) & 1]);
            }
        }
        for (int m = 0; m < mt; m++) {                         /* + sum_i c_i sx_i */
            const float* sxm = sx + m * (K / 16) + k0 / 16;
            if (len == CHUNK)
                for (int j = 0; j < CHUNK / 16; j += VL) offv[m] = VFMA(VLOAD(c + j), VLOAD(sxm + j), offv[m]);
            else
                for (int64_t j = 0; j < len / 16; j++) off[m] += c[j] * sxm[j];
        }
    }
    for (int m = 0; m < mt; m++) res[m] = VSUM(VADD(VADD(acc[m][0], acc[m][1]), offv[m])) + off[m];
}

/* the same for F16 / BF16: runs decoded to floats, then dotted */
static inline __attribute__((always_inline)) void row_tile_f(const btype_t* T, const uint8_t* row, const float* x,
                                                             int64_t K, float* res, const int mt) {
    float buf[CHUNK] __attribute__((aligned(64)));
    vec_t acc[MT][2];
    float tail[MT];
    for (int m = 0; m < mt; m++) acc[m][0] = acc[m][1] = VZERO(), tail[m] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        const int64_t len = K - k0 < CHUNK ? K - k0 : CHUNK;
        T->decode(row + k0 * T->bytes, buf, len);
        int64_t k = 0;
        for (; k + 2 * VL <= len; k += 2 * VL) {
            const vec_t w0 = VLOAD(buf + k), w1 = VLOAD(buf + k + VL);
            for (int m = 0; m < mt; m++) {
                acc[m][0] = VFMA(w0, VLOAD(x + m * K + k0 + k), acc[m][0]);
                acc[m][1] = VFMA(w1, VLOAD(x + m * K + k0 + k + VL), acc[m][1]);
            }
        }
        for (; k < len; k++)                     /* rows whose length is not a multiple of 2 VL */
            for (int m = 0; m < mt; m++) tail[m] += buf[k] * x[m * K + k0 + k];
    }
    for (int m = 0; m < mt; m++) res[m] = VSUM(VADD(acc[m][0], acc[m][1])) + tail[m];
}

#define TILE(MT_)                                                                     \
    if (T->unpack) row_tile_q(T, row, xm, sx + m0 * (K / 16), K, res, MT_);           \
    else row_tile_f(T, row, xm, K, res, MT_);                                         \
    break;

/* out[m * ldo] = W[row] . x[m] for all M rows of x, in tiles of MT; sx: x_sums16 of x */
static void row_all(const btype_t* T, const uint8_t* row, const float* x, const float* sx, int64_t M, int64_t K,
                    float* out, int64_t ldo) {
    float res[MT];
    for (int64_t m0 = 0; m0 < M; m0 += MT) {
        const float* xm = x + m0 * K;
        const int64_t mt = M - m0 < MT ? M - m0 : MT;
#ifdef HAVE_ROW1
        if (mt == 1 && T->row1) {
            out[m0 * ldo] = T->row1(row, xm, sx + m0 * (K / 16), K / T->block);
            continue;
        }
#endif
        switch (mt) {
            case 1: TILE(1)
            case 2: TILE(2)
            case 3: TILE(3)
            case 4: TILE(4)
            case 5: TILE(5)
            case 6: TILE(6)
            case 7: TILE(7)
            default: TILE(8)
        }
        for (int64_t m = 0; m < mt; m++) out[(m0 + m) * ldo] = res[m];
    }
}
#undef TILE

#define SUMS_ON_STACK 2048
#define QX_ON_STACK 16384   /* inputs of x quantized on the stack (scratch: 1.375 bytes per input) */
int32_t ggml_matmul(int32_t type, float* out, const float* x, int64_t M, int64_t K, int64_t N, const uint8_t* w) {
    if (type & GGML_ACT_INT8) return qgemm(type & ~GGML_ACT_INT8, out, x, M, K, N, w) ? -1 : 0;
    const btype_t* T = find_type(type, K);
    if (!T || M < 0 || N < 0 || (T->unpack && K % 16)) return -1;
    const int64_t row_bytes = K / T->block * T->bytes, ns = T->unpack ? M * (K / 16) : 0;
    float stack_sums[SUMS_ON_STACK];
    float* sx = ns <= SUMS_ON_STACK ? stack_sums : (float*)malloc((size_t)ns * sizeof(float));
    if (!sx) return -1;
    x_sums16(x, T->unpack ? M : 0, K, sx);
    /* chunks of 32 rows handed out on demand: a thread that loses its core for a moment on a
       shared machine leaves its rows to the other */
#pragma omp parallel for schedule(dynamic, 32) if (N * K >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) row_all(T, w + n * row_bytes, x, sx, M, K, out + n, N);
    if (sx != stack_sums) free(sx);
    return 0;
}

/* For decode.c (see parts.inc): out[0:n] for rows n0..n0+n-1 against one row x, serial */
void ggml_gemv_rows(int32_t type, float* out, const float* x, int64_t n0, int64_t n, int64_t K, const uint8_t* w) {
    if (type & GGML_ACT_INT8) {   /* x quantized here, per call: decode.c quantizes it once per step instead */
        if (K > QX_ON_STACK) return;  /* validated by the caller: never taken */
        _Alignas(64) uint8_t scratch[QX_ON_STACK * 2];
        qgemm_prepare_x(x, 1, K, scratch);
        qgemm_rows(type & ~GGML_ACT_INT8, out, 1, scratch, 1, K, n0, n, w);
        return;
    }
    const btype_t* T = find_type(type, K);
    if (!T || K / 16 > SUMS_ON_STACK * 8) return;   /* validated by the caller: never taken */
    const int64_t row_bytes = K / T->block * T->bytes;
    float sx[SUMS_ON_STACK * 8];
    if (T->unpack) x_sums16(x, 1, K, sx);
    for (int64_t i = 0; i < n; i++) row_all(T, w + (n0 + i) * row_bytes, x, sx, 1, K, out + i, 1);
}

int32_t ggml_dequant_rows(int32_t type, float* out, int64_t n0, int64_t n1, int64_t K, const uint8_t* w) {
    const btype_t* T = find_type(type, K);
    if (!T || n0 < 0 || n1 < n0) return -1;
    const int64_t row_bytes = K / T->block * T->bytes;
#pragma omp parallel for schedule(static) if ((n1 - n0) * K >= PAR_MIN)
    for (int64_t n = n0; n < n1; n++)
        for (int64_t k0 = 0; k0 < K; k0 += CHUNK)
            dequant_run(T, w + n * row_bytes, k0, K - k0 < CHUNK ? K - k0 : CHUNK, out + (n - n0) * K + k0);
    return 0;
}
