/* csrc/paged_attention.h -- decode attention reading K/V through a block table (PagedAttention,
 * Kwon et al. 2023). Reference: minillm/inference/_native.py:paged_attention_decode_reference. */
#ifndef MINILLM_PAGED_ATTENTION_H
#define MINILLM_PAGED_ATTENTION_H
#include <stdint.h>

/* out (B, H, D) = softmax(q k^T * scale) v for one query per sequence, where sequence b's key t
 * (0 <= t < lengths[b]) lives in k_pages[block_tables[b * max_blocks + t / block_size], kv head,
 * t % block_size, :], pages laid out (num_blocks, Hkv, block_size, D); query head h reads kv head
 * h / (H / Hkv). Returns 0, or -1 (nothing written) if a size, length or block id is out of range. */
int paged_attention_decode(float* out, const float* q, const float* k_pages, const float* v_pages,
                           const int32_t* block_tables, const int32_t* lengths, int64_t B, int64_t H,
                           int64_t Hkv, int64_t num_blocks, int64_t block_size, int64_t max_blocks,
                           int64_t D, float scale);

#endif
