/* csrc/paged_attention.c -- decode attention through a block table (Kwon et al. 2023, Sec. 4.1).
 * Reference: minillm/kernels/reference.py:paged_attention_decode.
 *
 * One task per (sequence, query head), spread over OpenMP threads. Each task walks its sequence's
 * blocks in logical order, finds the physical page in the block table, and folds CHUNK positions
 * at a time into an online softmax (online_softmax.inc, the same step attention.c takes), so K/V
 * are read once, in place, without gathering the pages into a contiguous copy.
 */
#include <math.h>
#include <string.h>
#include <omp.h>
#include "paged_attention.h"
#include "online_softmax.inc"

#define MAX_D 1024      /* head dims above this are rejected (the accumulator lives on the stack) */
#define CHUNK 64        /* scores computed per pass over a page */

static float dot(const float* a, const float* b, int64_t D) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

int paged_attention_decode(float* out, const float* q, const float* k_pages, const float* v_pages,
                           const int32_t* block_tables, const int32_t* lengths, int64_t B, int64_t H,
                           int64_t Hkv, int64_t num_blocks, int64_t block_size, int64_t max_blocks,
                           int64_t D, float scale) {
    if (B < 0 || H < 1 || Hkv < 1 || H % Hkv || num_blocks < 1 || block_size < 1 || max_blocks < 1 ||
        D < 1 || D > MAX_D)
        return -1;
    /* never trust the caller: every length and every block id that will be read must be in range */
    for (int64_t b = 0; b < B; b++) {
        int64_t n = lengths[b];
        if (n < 1 || n > max_blocks * block_size) return -1;
        for (int64_t j = 0; j < (n + block_size - 1) / block_size; j++) {
            int32_t blk = block_tables[b * max_blocks + j];
            if (blk < 0 || blk >= num_blocks) return -1;
        }
    }
    const int64_t group = H / Hkv;
    const int64_t page = Hkv * block_size * D;          /* floats per physical block */
    int64_t work = 0;
    for (int64_t b = 0; b < B; b++) work += lengths[b];
    #pragma omp parallel for collapse(2) schedule(static) if (work * H * D >= (1 << 15))
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const float* qv = q + (b * H + h) * D;
            const int64_t kh = h / group, n = lengths[b];
            float acc[MAX_D], s[CHUNK];
            float m = -INFINITY, l = 0.0f;
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int64_t t0 = 0; t0 < n; t0 += CHUNK) {
                const int64_t t1 = t0 + CHUNK < n ? t0 + CHUNK : n;
                for (int64_t t = t0; t < t1; t++) {
                    const int64_t blk = block_tables[b * max_blocks + t / block_size];
                    const float* kt = k_pages + blk * page + (kh * block_size + t % block_size) * D;
                    s[t - t0] = dot(qv, kt, D) * scale;
                }
                online_softmax_step(s, t1 - t0, &m, &l, acc, D);     /* s becomes p_t */
                for (int64_t t = t0; t < t1; t++) {
                    const float p = s[t - t0];
                    const int64_t blk = block_tables[b * max_blocks + t / block_size];
                    const float* vt = v_pages + blk * page + (kh * block_size + t % block_size) * D;
                    #pragma omp simd
                    for (int64_t d = 0; d < D; d++) acc[d] += p * vt[d];
                }
            }
            float* o = out + (b * H + h) * D;
            const float inv = 1.0f / l;
            for (int64_t d = 0; d < D; d++) o[d] = acc[d] * inv;
        }
    }
    return 0;
}
