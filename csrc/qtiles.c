/* csrc/qtiles.c -- ggml block weights as row tiles times int8 activations, see qtiles.h.
   Reference: GGMLLinear.matmul_int8_act_reference (minillm/quant/linear.py).

   A unit's tile keeps 4 inputs of the 16 rows of a group in each 64 bytes, so one VPDPBUSD of those
   bytes with 4 codes of x broadcast to every lane adds 4 products to each of 16 rows' sums: the
   lanes are rows. A unit of 32 inputs is 8 of them (4-bit codes: 4 loads, each split into its low
   nibbles and its high ones kept in place, times 16, summed apart and shifted back, exact), and the
   unit's float work is one convert and one FMA per 16 rows, against per 2 rows in qgemm.c's row
   kernels, whose blocks keep a row's inputs together. Q8_0's codes are stored plus 128 (VPDPBUSD
   multiplies unsigned by signed bytes): its sums, Q4_0's (codes 0..15, weight code - 8) and
   Q6_K's (0..63, code - 32, per half of 16 times its int8 scale) are corrected in integers with
   the sums of x's codes, so only Q4_1 and Q4_K keep a float offset. At one
   row of x a call streams QTILES_RUNS groups side by side, each from its own run of W with a
   prefetch ahead: the memory system needs several streams per core (as qgemm.c's rows_runs). The
   AVX-512 VNNI and AVX2 variants have the kernels (AVX2: VPMADDUBSW + VPMADDWD for VPDPBUSD, below);
   the generic one reports none (qtiles_usable 0). */
#include "qtiles.h"
#include "parts.inc"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14 };

static int tiled(int32_t t) { return t == T_Q4_0 || t == T_Q4_1 || t == T_Q8_0 || t == T_Q4_K || t == T_Q6_K; }
static int64_t unit_inputs(int32_t t) { return t == T_Q4_K || t == T_Q6_K ? 256 : 32; }   /* K's granularity */

/* bytes of one ggml block (Q4_K, Q6_K: a super-block of 256) */
static int64_t block_bytes(int32_t t) {
    switch (t) {
        case T_Q8_0: return 34; case T_Q4_0: return 18; case T_Q4_1: return 20; case T_Q4_K: return 144;
        case T_Q6_K: return 210; default: return 0;
    }
}

/* bytes of one group of 16 rows per block: the layout keeps the blocks' bytes (qtiles.h) */
static int64_t group_block_bytes(int32_t t) { return 16 * block_bytes(t); }

int64_t qtiles_bytes(int32_t type, int64_t N, int64_t K) {
    if (!tiled(type) || N < 0 || K <= 0 || K % unit_inputs(type)) return -1;
    return (N + 15) / 16 * (K / unit_inputs(type)) * group_block_bytes(type);
}

/* code of row n (< 16), input k (< 32) into a unit's tile: one byte each (Q8_0), or nibbles */
static void put_code(uint8_t* tile, int n, int k, int code, int nibbles) {
    const int i = (k / 4) * 64 + n * 4 + k % 4;
    if (!nibbles) tile[i] = (uint8_t)code;
    else if (i < 256) tile[i] = (uint8_t)((tile[i] & 0xF0) | (code & 0xF));
    else tile[i - 256] = (uint8_t)((tile[i - 256] & 0x0F) | ((code & 0xF) << 4));
}

/* Q6_K's 6-bit code (0..63) of weight i (< 256) of the block B (ggml: ql[128], qh[64], scales[16], d) */
static int q6_code(const uint8_t* B, int i) {
    const int h = i / 128, r = (i % 128) / 32, l = i % 32;
    const int lo = (B[64 * h + 32 * (r % 2) + l] >> (4 * (r / 2))) & 0xF;
    return lo | (((B[128 + 32 * h + l] >> (2 * r)) & 3) << 4);
}

int32_t qtiles_pack(int32_t type, const uint8_t* w, int64_t N, int64_t K, uint8_t* out) {
    const int64_t total = qtiles_bytes(type, N, K);
    if (total < 0) return -1;
    memset(out, 0, (size_t)total);
    const int64_t nblk = K / unit_inputs(type), gb = group_block_bytes(type), raw = block_bytes(type);
    for (int64_t r = 0; r < N; r++) {
        const int n = (int)(r % 16);
        uint8_t* g = out + (r / 16) * nblk * gb;
        for (int64_t b = 0; b < nblk; b++) {
            const uint8_t* B = w + (r * nblk + b) * raw;
            uint8_t* T = g + b * gb;
            if (type == T_Q8_0) {
                for (int k = 0; k < 32; k++) put_code(T, n, k, (uint8_t)(B[2 + k] ^ 0x80), 0);   /* code + 128 */
                memcpy(T + 512 + 2 * n, B, 2);
            } else if (type == T_Q4_0 || type == T_Q4_1) {
                const int o = type == T_Q4_0 ? 2 : 4;
                for (int k = 0; k < 16; k++) {
                    put_code(T, n, k, B[o + k] & 0xF, 1);
                    put_code(T, n, k + 16, B[o + k] >> 4, 1);
                }
                memcpy(T + 256 + 2 * n, B, 2);                          /* d */
                if (type == T_Q4_1) memcpy(T + 288 + 2 * n, B + 2, 2);  /* m */
            } else if (type == T_Q6_K) {                                /* Q6_K super-block */
                memcpy(T + 2 * n, B + 208, 2);                          /* d */
                for (int i = 0; i < 16; i++) T[32 + 16 * i + n] = B[192 + i];   /* the int8 scales */
                for (int j = 0; j < 8; j++) {
                    uint8_t* U = T + 288 + 384 * j;
                    for (int k = 0; k < 32; k++) {
                        const int code = q6_code(B, 32 * j + k), at = (k / 4) * 64 + n * 4 + k % 4;
                        put_code(U, n, k, code & 0xF, 1);
                        U[256 + at % 128] |= (uint8_t)((code >> 4) << (2 * (at / 128)));
                    }
                }
            } else {                                                    /* Q4_K super-block */
                memcpy(T + 2 * n, B, 2);                                /* d */
                memcpy(T + 32 + 2 * n, B + 2, 2);                       /* dmin */
                for (int i = 0; i < 12; i++) T[64 + 16 * i + n] = B[4 + i];
                for (int j = 0; j < 8; j++)                             /* unit j: pair j / 2's nibbles */
                    for (int k = 0; k < 32; k++) {
                        const uint8_t v = B[16 + 32 * (j / 2) + k];
                        put_code(T + 256 + 256 * j, n, k, j & 1 ? v >> 4 : v & 0xF, 1);
                    }
            }
        }
    }
    return 0;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define QT_KERNELS 512
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QT_KERNELS 256
#endif

#if defined(QT_KERNELS)
#include <immintrin.h>

#define QT_AHEAD 1024        /* prefetch distance in each run (bytes) */

int32_t qtiles_usable(int32_t type) {
    static int ok = -1;      /* first asked from Python, before any kernel runs */
    if (ok < 0) {
        const char* env = getenv("MINILLM_TILES");
        ok = !(env && strcmp(env, "0") == 0);
    }
    return ok && tiled(type);
}

/* unit u of a group: its codes, and its scale and offset vectors (16 rows) */
static inline __attribute__((always_inline)) const uint8_t* unit_codes(const int t, const uint8_t* g, int64_t u) {
    if (t == T_Q4_K) return g + (u / 8) * group_block_bytes(t) + 256 + (u % 8) * 256;
    if (t == T_Q6_K) return g + (u / 8) * group_block_bytes(t) + 288 + (u % 8) * 384;
    return g + u * group_block_bytes(t);
}

/* the lines of group g from byte a to byte z (a unit's share of the group's bytes, QT_AHEAD bytes
   ahead: each group prefetches the lines entering that window, each once) */
static inline __attribute__((always_inline)) void prefetch_window(const uint8_t* g, int64_t a, int64_t z) {
    const uintptr_t from = ((uintptr_t)g + (uintptr_t)a) & ~(uintptr_t)63, to = ((uintptr_t)g + (uintptr_t)z) & ~(uintptr_t)63;
    for (uintptr_t l = from; l < to; l += 64) _mm_prefetch((const char*)l, _MM_HINT_T0);
}

/* the sums of the codes of x at p: inputs 0-15 in *h0, 16-31 in *h1 */
static inline void code_sums(const int8_t* p, int32_t* h0, int32_t* h1) {
    const __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)p), _mm256_set1_epi8((char)0x80));
    const __m256i s = _mm256_sad_epu8(v, _mm256_setzero_si256());              /* 4 sums of 8 (u = q + 128) */
    const __m128i a = _mm256_castsi256_si128(s), b = _mm256_extracti128_si256(s, 1);
    *h0 = (int32_t)(_mm_cvtsi128_si64(a) + _mm_extract_epi64(a, 1)) - 128 * 16;
    *h1 = (int32_t)(_mm_cvtsi128_si64(b) + _mm_extract_epi64(b, 1)) - 128 * 16;
}

/* unit u of mt rows of x (codes q, row stride K): d_x into dx, and the sums of the codes of its halves
   into sq0, sq1 (sums) or d_x times them, both halves together, into xsum (else) */
static inline __attribute__((always_inline)) void x_unit(const int8_t* q, const float* d, const float* xs,
                                                         int64_t K, int64_t u, int mt, int sums, float* dx,
                                                         int32_t* sq0, int32_t* sq1, float* xsum) {
    const int64_t nunits = K / 32;
    for (int m = 0; m < mt; m++) {
        const int64_t at = m * nunits + u;
        dx[m] = d[at];
        if (sums) code_sums(q + m * K + 32 * u, sq0 + m, sq1 + m);
        else xsum[m] = xs[2 * at] + xs[2 * at + 1];
    }
}

#if QT_KERNELS == 512
static inline __m512 ph16(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }

static inline __m512 bytes16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }

/* unit u's scale and offset vectors of the 16 rows of group g (Q8_0, Q4_0, Q4_1) */
static inline __attribute__((always_inline)) void unit_scales(const int t, const uint8_t* g, int64_t u, __m512* s,
                                                            __m512* c) {
    const uint8_t* p = g + u * group_block_bytes(t) + (t == T_Q8_0 ? 512 : 256);
    *s = ph16(p);
    *c = t == T_Q4_1 ? ph16(p + 32) : _mm512_setzero_ps();
}

/* a Q6_K unit's 8 code vectors (inputs 4k..4k+3 of the 16 rows, 0..63) from its 256 nibble bytes and
   128 bytes of top bits (byte i: bits 2s, 2s + 1 of tile byte i + 128 s) */
static inline __attribute__((always_inline)) void q6_unit(const uint8_t* p, __m512i c[8]) {
    const __m512i lo4 = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    const __m512i h0 = _mm512_loadu_si512((const void*)(p + 256)), h1 = _mm512_loadu_si512((const void*)(p + 320));
    for (int k = 0; k < 4; k++) {
        const __m512i v = _mm512_loadu_si512((const void*)(p + 64 * k));
        c[k] = _mm512_and_si512(v, lo4);
        c[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
    }
    /* tile bytes 64 k..: k / 2 = s picks the bit pair, k % 2 the half of the 128 top-bit bytes */
    c[0] = _mm512_or_si512(c[0], _mm512_and_si512(_mm512_slli_epi16(h0, 4), top));
    c[1] = _mm512_or_si512(c[1], _mm512_and_si512(_mm512_slli_epi16(h1, 4), top));
    c[2] = _mm512_or_si512(c[2], _mm512_and_si512(_mm512_slli_epi16(h0, 2), top));
    c[3] = _mm512_or_si512(c[3], _mm512_and_si512(_mm512_slli_epi16(h1, 2), top));
    c[4] = _mm512_or_si512(c[4], _mm512_and_si512(h0, top));
    c[5] = _mm512_or_si512(c[5], _mm512_and_si512(h1, top));
    c[6] = _mm512_or_si512(c[6], _mm512_and_si512(_mm512_srli_epi16(h0, 2), top));
    c[7] = _mm512_or_si512(c[7], _mm512_and_si512(_mm512_srli_epi16(h1, 2), top));
}

/* res[(j mt + m) 16 + i] = row i of group G[j] . row m of x, for ng <= QTILES_RUNS groups side by
   side and mt <= 16 rows of x (codes q with row stride K, d_x d, sums xs as qgemm_prepare_x's).
   The float part per (j, m) runs in unit order whatever ng and mt are (qtiles.h). */
static inline __attribute__((always_inline)) void tiles_core(const int t, const uint8_t* const* G, const int ng,
                                                           const int8_t* q, const float* d, const float* xs,
                                                           const int64_t K, const int mt, float* res) {
    const int64_t nunits = K / 32, span = (K / unit_inputs(t)) * group_block_bytes(t);
    const int exact = t == T_Q8_0 || t == T_Q4_0 || t == T_Q6_K;     /* the offset in integers */
    const __m512i lo4 = _mm512_set1_epi8(0x0F), hi4 = _mm512_set1_epi8((char)0xF0);
    __m512 acc[QTILES_RUNS * 16], off[QTILES_RUNS * 16];
    for (int r = 0; r < ng * mt; r++) acc[r] = off[r] = _mm512_setzero_ps();
    __m512 dk[QTILES_RUNS][2];         /* Q4_K: d and -dmin of each group's super-block; Q6_K: d */
    _Alignas(64) uint8_t k4[QTILES_RUNS][4][64];       /* Q4_K: sc 0-3, m 0-3, sc 4-7, m 4-7 (16 rows each) */
    for (int j = 0; j < QTILES_RUNS; j++) dk[j][0] = dk[j][1] = _mm512_setzero_ps();
    int32_t sq0[16], sq1[16];          /* per row of x: the sums of unit u's codes, inputs 0-15, 16-31 */
    float dx[16], xsum[16];
    for (int64_t u = 0; u < nunits; u++) {
        x_unit(q, d, xs, K, u, mt, exact, dx, sq0, sq1, xsum);
        if ((t == T_Q4_K || t == T_Q6_K) && u % 8 == 0)
            for (int j = 0; j < ng; j++) {
                const uint8_t* h = G[j] + (u / 8) * group_block_bytes(t);
                dk[j][0] = ph16(h);
                if (t == T_Q4_K) {    /* the 8 scales and mins of the 16 rows, all at once (k4_scales_mins) */
                    dk[j][1] = _mm512_sub_ps(_mm512_setzero_ps(), ph16(h + 32));
                    const __m512i a = _mm512_loadu_si512((const void*)(h + 64)),     /* bytes 0-3 of 16 rows */
                                  b = _mm512_loadu_si512((const void*)(h + 128)),    /* bytes 4-7 */
                                  c = _mm512_loadu_si512((const void*)(h + 192));    /* bytes 8-11 */
                    const __m512i m6 = _mm512_set1_epi8(0x3F), m4 = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
                    _mm512_store_si512((void*)k4[j][0], _mm512_and_si512(a, m6));                     /* sc 0-3 */
                    _mm512_store_si512((void*)k4[j][1], _mm512_and_si512(b, m6));                     /* m 0-3 */
                    _mm512_store_si512((void*)k4[j][2], _mm512_or_si512(_mm512_and_si512(c, m4),      /* sc 4-7 */
                                                                        _mm512_and_si512(_mm512_srli_epi16(a, 2), top)));
                    _mm512_store_si512((void*)k4[j][3], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(c, 4), m4),
                                                                        _mm512_and_si512(_mm512_srli_epi16(b, 2), top)));
                }
            }
        const int64_t ahead0 = span * u / nunits + QT_AHEAD, ahead1 = span * (u + 1) / nunits + QT_AHEAD;
        for (int j = 0; j < ng; j++) {
            const uint8_t* cp = unit_codes(t, G[j], u);
            prefetch_window(G[j], ahead0, ahead1);
            __m512i c[8];
            if (t == T_Q8_0) {
                for (int k = 0; k < 8; k++) c[k] = _mm512_loadu_si512((const void*)(cp + 64 * k));
            } else if (t == T_Q6_K) {
                q6_unit(cp, c);
            } else {
                for (int k = 0; k < 4; k++) {
                    const __m512i v = _mm512_loadu_si512((const void*)(cp + 64 * k));
                    c[k] = _mm512_and_si512(v, lo4);                   /* inputs 4k..4k+3 */
                    c[k + 4] = _mm512_and_si512(v, hi4);               /* inputs 16 + 4k..: 16 codes */
                }
            }
            __m512 sv, cv;
            __m512i sc0 = _mm512_setzero_si512(), sc1 = sc0;        /* Q6_K: the int8 scales of the halves */
            if (t == T_Q6_K) {
                const uint8_t* h = G[j] + (u / 8) * group_block_bytes(t) + 32 + 32 * (u % 8);
                sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)h));
                sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(h + 16)));
                sv = dk[j][0];
                cv = _mm512_setzero_ps();
            } else if (t == T_Q4_K) {
                const int jj = (int)(u % 8);
                const uint8_t* sc = k4[j][jj < 4 ? 0 : 2] + 16 * (jj % 4);
                sv = _mm512_mul_ps(dk[j][0], bytes16(_mm_load_si128((const __m128i*)sc)));        /* d sc_j */
                cv = _mm512_mul_ps(dk[j][1], bytes16(_mm_load_si128((const __m128i*)(sc + 64))));  /* -dmin m_j */
            } else {
                unit_scales(t, G[j], u, &sv, &cv);
            }
            for (int m = 0; m < mt; m++) {
                const int32_t* x4 = (const int32_t*)(q + m * K + 32 * u);
                __m512i s0 = _mm512_setzero_si512(), s1 = s0;
                for (int k = 0; k < 4; k++) {
                    s0 = _mm512_dpbusd_epi32(s0, c[k], _mm512_set1_epi32(x4[k]));
                    s1 = _mm512_dpbusd_epi32(s1, c[k + 4], _mm512_set1_epi32(x4[k + 4]));
                }
                __m512i is;
                if (t == T_Q6_K) {         /* per half: (dot - 32 sum of x's codes) times its scale */
                    const __m512i i0 = _mm512_sub_epi32(s0, _mm512_set1_epi32(32 * sq0[m]));
                    const __m512i i1 = _mm512_sub_epi32(s1, _mm512_set1_epi32(32 * sq1[m]));
                    is = _mm512_add_epi32(_mm512_mullo_epi32(i0, sc0), _mm512_mullo_epi32(i1, sc1));
                } else {
                    is = t == T_Q8_0 ? _mm512_add_epi32(s0, s1) : _mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4));
                    if (exact)             /* minus 128 (Q8_0) or 8 (Q4_0) times the sum of x's codes */
                        is = _mm512_sub_epi32(is, _mm512_set1_epi32((t == T_Q8_0 ? 128 : 8) * (sq0[m] + sq1[m])));
                }
                const int r = j * mt + m;
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(sv, _mm512_set1_ps(dx[m])), acc[r]);
                if (!exact) off[r] = _mm512_fmadd_ps(cv, _mm512_set1_ps(xsum[m]), off[r]);
            }
        }
    }
    for (int r = 0; r < ng * mt; r++) _mm512_storeu_ps(res + 16 * r, exact ? acc[r] : _mm512_add_ps(acc[r], off[r]));
}

#else
/* AVX2 (no VNNI): the same tiles, each 64 bytes as two halves of 8 rows. VPDPBUSD's place is taken by
   VPMADDUBSW (pairs of products into int16) and VPMADDWD against ones (into int32). The 4-bit codes
   (0..15) of a unit's 8 products per half sum in int16 before one VPMADDWD (|sum| <= 8 x 2 x 15 x 127
   = 30480); Q6_K's (0..63) in pairs (<= 32004); Q8_0's codes, stored plus 128, are made signed again
   and go through the sign trick (|w| . x with w's sign, <= 2 x 128 x 127 per pair), each product
   widened on its own. Every integer is the one the AVX-512 kernel makes, and the float work per (row,
   unit) is the same, in the same order. */
static inline __m256 ph8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }

static inline __m256 bytes8(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}

/* half h (rows 8h..8h+7) of a Q6_K unit: its 8 code vectors, inputs 4k..4k+3, 0..63 (q6_unit's) */
static inline __attribute__((always_inline)) void q6_half(const uint8_t* p, int h, __m256i c[8]) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    const __m256i h0 = _mm256_loadu_si256((const __m256i*)(p + 256 + 32 * h)),
                  h1 = _mm256_loadu_si256((const __m256i*)(p + 320 + 32 * h));
    for (int k = 0; k < 4; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(p + 64 * k + 32 * h));
        c[k] = _mm256_and_si256(v, lo4);
        c[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
    }
    for (int k = 0; k < 8; k++) {     /* tile bytes 64 k..: bit pair k / 2 of h0 (k even) or h1 (odd) */
        const __m256i v = k % 2 ? h1 : h0;
        const __m256i at = k / 2 == 0 ? _mm256_slli_epi16(v, 4) : k / 2 == 1 ? _mm256_slli_epi16(v, 2)
                         : k / 2 == 2 ? v : _mm256_srli_epi16(v, 2);
        c[k] = _mm256_or_si256(c[k], _mm256_and_si256(at, top));
    }
}

/* a Q4_K super-block's 8 scales and mins of the 16 rows (k4_scales_mins) from its header hd: sc 0-3,
   m 0-3, sc 4-7, m 4-7, 16 rows each */
static inline __attribute__((always_inline)) void k4_unpack(const uint8_t* hd, uint8_t out[4][64]) {
    const __m256i m6 = _mm256_set1_epi8(0x3F), m4 = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        const __m256i a = _mm256_loadu_si256((const __m256i*)(hd + 64 + 32 * h)),
                      b = _mm256_loadu_si256((const __m256i*)(hd + 128 + 32 * h)),
                      c = _mm256_loadu_si256((const __m256i*)(hd + 192 + 32 * h));
        _mm256_storeu_si256((__m256i*)(out[0] + 32 * h), _mm256_and_si256(a, m6));
        _mm256_storeu_si256((__m256i*)(out[1] + 32 * h), _mm256_and_si256(b, m6));
        _mm256_storeu_si256((__m256i*)(out[2] + 32 * h),
                            _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_srli_epi16(a, 2), top)));
        _mm256_storeu_si256((__m256i*)(out[3] + 32 * h), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
                                                                         _mm256_and_si256(_mm256_srli_epi16(b, 2), top)));
    }
}

/* half h of unit u's 8 code vectors (inputs 4k..4k+3 of 8 rows; Q8_0 signed, the others 0..15 or 0..63) */
static inline __attribute__((always_inline)) void half_codes(const int t, const uint8_t* cp, int h, __m256i c[8]) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    if (t == T_Q8_0) {
        for (int k = 0; k < 8; k++)      /* signed again */
            c[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(cp + 64 * k + 32 * h)), _mm256_set1_epi8((char)0x80));
    } else if (t == T_Q6_K) {
        q6_half(cp, h, c);
    } else {
        for (int k = 0; k < 4; k++) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(cp + 64 * k + 32 * h));
            c[k] = _mm256_and_si256(v, lo4);                              /* inputs 4k.. */
            c[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);   /* inputs 16 + 4k.. */
        }
    }
}

/* the unit's exact integer dot for 8 rows against x's codes x4 (sq0, sq1: sums of x's codes of the
   unit's halves; sc0, sc1: Q6_K's scales of the halves), as the AVX-512 kernel's */
static inline __attribute__((always_inline)) __m256i half_dot(const int t, const __m256i c[8], const int32_t* x4,
                                                              int32_t sq0, int32_t sq1, __m256i sc0, __m256i sc1) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (t == T_Q8_0) {
        __m256i is = _mm256_setzero_si256();
        for (int k = 0; k < 8; k++) {
            const __m256i xv = _mm256_sign_epi8(_mm256_set1_epi32(x4[k]), c[k]);
            is = _mm256_add_epi32(is, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(c[k]), xv), ones));
        }
        return is;
    }
    if (t == T_Q6_K) {       /* per half of 16: (dot - 32 sum of x's codes) times its scale */
        __m256i s2[4];
        for (int k = 0; k < 4; k++)
            s2[k] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(c[2 * k], _mm256_set1_epi32(x4[2 * k])),
                                                       _mm256_maddubs_epi16(c[2 * k + 1], _mm256_set1_epi32(x4[2 * k + 1]))),
                                      ones);
        const __m256i i0 = _mm256_sub_epi32(_mm256_add_epi32(s2[0], s2[1]), _mm256_set1_epi32(32 * sq0));
        const __m256i i1 = _mm256_sub_epi32(_mm256_add_epi32(s2[2], s2[3]), _mm256_set1_epi32(32 * sq1));
        return _mm256_add_epi32(_mm256_mullo_epi32(i0, sc0), _mm256_mullo_epi32(i1, sc1));
    }
    __m256i s16 = _mm256_maddubs_epi16(c[0], _mm256_set1_epi32(x4[0]));
    for (int k = 1; k < 8; k++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(c[k], _mm256_set1_epi32(x4[k])));
    const __m256i is = _mm256_madd_epi16(s16, ones);
    return t == T_Q4_0 ? _mm256_sub_epi32(is, _mm256_set1_epi32(8 * (sq0 + sq1))) : is;
}

/* tiles_core of the AVX-512 kernel, 8 rows per vector: res as there */
static inline __attribute__((always_inline)) void tiles_core(const int t, const uint8_t* const* G, const int ng,
                                                           const int8_t* q, const float* d, const float* xs,
                                                           const int64_t K, const int mt, float* res) {
    const int64_t nunits = K / 32, span = (K / unit_inputs(t)) * group_block_bytes(t);
    const int exact = t == T_Q8_0 || t == T_Q4_0 || t == T_Q6_K;
    __m256 acc[QTILES_RUNS * 16 * 2], off[QTILES_RUNS * 16 * 2];    /* [(j mt + m) 2 + half] */
    for (int r = 0; r < 2 * ng * mt; r++) acc[r] = off[r] = _mm256_setzero_ps();
    __m256 dk[QTILES_RUNS][2][2];      /* Q4_K: d and -dmin per half; Q6_K: d */
    _Alignas(32) uint8_t k4[QTILES_RUNS][4][64];       /* Q4_K: sc 0-3, m 0-3, sc 4-7, m 4-7 (16 rows each) */
    for (int j = 0; j < QTILES_RUNS; j++) dk[j][0][0] = dk[j][0][1] = dk[j][1][0] = dk[j][1][1] = _mm256_setzero_ps();
    int32_t sq0[16] = {0}, sq1[16] = {0};
    float dx[16], xsum[16];
    for (int64_t u = 0; u < nunits; u++) {
        x_unit(q, d, xs, K, u, mt, exact && t != T_Q8_0, dx, sq0, sq1, xsum);   /* Q8_0: signed, no sums */
        if ((t == T_Q4_K || t == T_Q6_K) && u % 8 == 0)
            for (int j = 0; j < ng; j++) {
                const uint8_t* hd = G[j] + (u / 8) * group_block_bytes(t);
                for (int h = 0; h < 2; h++) {
                    dk[j][0][h] = ph8(hd + 16 * h);
                    if (t == T_Q4_K) dk[j][1][h] = _mm256_sub_ps(_mm256_setzero_ps(), ph8(hd + 32 + 16 * h));
                }
                if (t == T_Q4_K) k4_unpack(hd, k4[j]);
            }
        const int64_t ahead0 = span * u / nunits + QT_AHEAD, ahead1 = span * (u + 1) / nunits + QT_AHEAD;
        for (int j = 0; j < ng; j++) {
            const uint8_t* cp = unit_codes(t, G[j], u);
            prefetch_window(G[j], ahead0, ahead1);
            for (int h = 0; h < 2; h++) {
                __m256i c[8];
                half_codes(t, cp, h, c);
                __m256 sv, cv = _mm256_setzero_ps();
                __m256i sc0 = _mm256_setzero_si256(), sc1 = sc0;
                if (t == T_Q6_K) {
                    const uint8_t* hs = G[j] + (u / 8) * group_block_bytes(t) + 32 + 32 * (u % 8) + 8 * h;
                    sc0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)hs));
                    sc1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(hs + 16)));
                    sv = dk[j][0][h];
                } else if (t == T_Q4_K) {
                    const int jj = (int)(u % 8);
                    const uint8_t* sc = k4[j][jj < 4 ? 0 : 2] + 16 * (jj % 4) + 8 * h;
                    sv = _mm256_mul_ps(dk[j][0][h], bytes8(sc));          /* d sc_j */
                    cv = _mm256_mul_ps(dk[j][1][h], bytes8(sc + 64));     /* -dmin m_j */
                } else {
                    const uint8_t* p = G[j] + u * group_block_bytes(t) + (t == T_Q8_0 ? 512 : 256) + 16 * h;
                    sv = ph8(p);
                    if (t == T_Q4_1) cv = ph8(p + 32);
                }
                for (int m = 0; m < mt; m++) {
                    const int32_t* x4 = (const int32_t*)(q + m * K + 32 * u);
                    const __m256i is = half_dot(t, c, x4, sq0[m], sq1[m], sc0, sc1);
                    const int r = 2 * (j * mt + m) + h;
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(sv, _mm256_set1_ps(dx[m])), acc[r]);
                    if (!exact) off[r] = _mm256_fmadd_ps(cv, _mm256_set1_ps(xsum[m]), off[r]);
                }
            }
        }
    }
    for (int r = 0; r < 2 * ng * mt; r++) _mm256_storeu_ps(res + 8 * r, exact ? acc[r] : _mm256_add_ps(acc[r], off[r]));
}
#endif

/* the kernel for type t with ng groups and mt rows as given */
static void tiles_any(const int t, const uint8_t* const* G, const int ng, const int8_t* q, const float* d,
                      const float* xs, const int64_t K, const int mt, float* res) {
    switch (t) {
        case T_Q8_0: tiles_core(T_Q8_0, G, ng, q, d, xs, K, mt, res); return;
        case T_Q4_0: tiles_core(T_Q4_0, G, ng, q, d, xs, K, mt, res); return;
        case T_Q4_1: tiles_core(T_Q4_1, G, ng, q, d, xs, K, mt, res); return;
        case T_Q6_K: tiles_core(T_Q6_K, G, ng, q, d, xs, K, mt, res); return;
        default: tiles_core(T_Q4_K, G, ng, q, d, xs, K, mt, res); return;
    }
}

static void tiles_one_row(const int t, const uint8_t* const* G, const int ng, const int8_t* q, const float* d,
                          const float* xs, const int64_t K, float* res) {
    if (ng == QTILES_RUNS) {       /* M = 1, QTILES_RUNS groups: the decode case, its loops unrolled */
        switch (t) {
            case T_Q8_0: tiles_core(T_Q8_0, G, QTILES_RUNS, q, d, xs, K, 1, res); return;
            case T_Q4_0: tiles_core(T_Q4_0, G, QTILES_RUNS, q, d, xs, K, 1, res); return;
            case T_Q4_1: tiles_core(T_Q4_1, G, QTILES_RUNS, q, d, xs, K, 1, res); return;
            case T_Q6_K: tiles_core(T_Q6_K, G, QTILES_RUNS, q, d, xs, K, 1, res); return;
            default: tiles_core(T_Q4_K, G, QTILES_RUNS, q, d, xs, K, 1, res); return;
        }
    }
    tiles_any(t, G, ng, q, d, xs, K, 1, res);
}

/* rows lo..hi-1 of a group's 16 results (res + 16 i for result row i) into out[... + r - base] */
static void put_rows(float* out, const float* res, int64_t g, int64_t lo, int64_t hi, int64_t base) {
    const int64_t r0 = 16 * g, a = lo > r0 ? lo : r0, b = hi < r0 + 16 ? hi : r0 + 16;
    if (a < b) memcpy(out + (a - base), res + (a - r0), (size_t)(b - a) * sizeof(float));
}

/* One row of x against groups first + j gap (j < QTILES_RUNS) of the tile layout t, those below
   `groups` side by side; their rows in lo..hi-1 go to out[r - base] */
static void one_row_groups(int32_t type, float* out, const int8_t* q, const float* d, const float* xs, int64_t K,
                           int64_t first, int64_t gap, int64_t groups, int64_t lo, int64_t hi, int64_t base,
                           const uint8_t* t) {
    const int64_t span = (K / unit_inputs(type)) * group_block_bytes(type);
    const uint8_t* G[QTILES_RUNS];
    int64_t at[QTILES_RUNS];
    int ng = 0;
    for (int j = 0; j < QTILES_RUNS && first + j * gap < groups; j++) {
        at[ng] = first + j * gap;
        G[ng] = t + at[ng] * span;
        ng++;
    }
    if (!ng) return;
    float res[QTILES_RUNS * 16];
    tiles_one_row(type, G, ng, q, d, xs, K, res);
    for (int j = 0; j < ng; j++) put_rows(out, res + 16 * j, at[j], lo, hi, base);
}

void qtiles_runs(int32_t type, float* out, const int8_t* q, const float* d, const float* xs, int64_t K, int64_t g,
                 int64_t gap, int64_t end, const uint8_t* t) {
    one_row_groups(type, out, q, d, xs, K, g, gap, (end + 15) / 16, 0, end, 0, t);
}

void qtiles_rows(int32_t type, float* out, int64_t ldo, const int8_t* q, const float* d, const float* xs, int64_t M,
                 int64_t K, int64_t n0, int64_t n, const uint8_t* t) {
    if (n <= 0 || M <= 0) return;
    const int64_t g0 = n0 / 16, g1 = (n0 + n + 15) / 16;
    if (M == 1) {                 /* QTILES_RUNS runs of the range's groups side by side */
        const int64_t per = (g1 - g0 + QTILES_RUNS - 1) / QTILES_RUNS;
        for (int64_t i = 0; i < per; i++)
            one_row_groups(type, out, q, d, xs, K, g0 + i, per, g1, n0, n0 + n, n0, t);
        return;
    }
    const int64_t span = (K / unit_inputs(type)) * group_block_bytes(type), nunits = K / 32;
    float res[16 * 16];
    for (int64_t m0 = 0; m0 < M; m0 += 16) {
        const int mt = M - m0 < 16 ? (int)(M - m0) : 16;
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t* G[1] = {t + g * span};
            tiles_any(type, G, 1, q + m0 * K, d + m0 * nunits, xs + 2 * m0 * nunits, K, mt, res);
            for (int m = 0; m < mt; m++) put_rows(out + (m0 + m) * ldo, res + 16 * m, g, n0, n0 + n, n0);
        }
    }
}

#else  /* no row-tile kernels in this variant */
int32_t qtiles_usable(int32_t type) {
    (void)type;
    return 0;
}

void qtiles_runs(int32_t type, float* out, const int8_t* q, const float* d, const float* xs, int64_t K, int64_t g,
                 int64_t gap, int64_t end, const uint8_t* t) {
    (void)type, (void)out, (void)q, (void)d, (void)xs, (void)K, (void)g, (void)gap, (void)end, (void)t;
}

void qtiles_rows(int32_t type, float* out, int64_t ldo, const int8_t* q, const float* d, const float* xs, int64_t M,
                 int64_t K, int64_t n0, int64_t n, const uint8_t* t) {
    (void)type, (void)out, (void)ldo, (void)q, (void)d, (void)xs, (void)M, (void)K, (void)n0, (void)n, (void)t;
}
#endif
