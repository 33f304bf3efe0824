/* csrc/bpe.h -- byte-level BPE kernels: pre-tokenizer scanners for the built-in patterns, the
   byte-pair merge loop, whole-text encode with a pre-token cache, and the incremental trainer.
   References (same arguments, plain Python): minillm/tokenizer/bpe.py (_merge_reference,
   encode_ordinary_reference), minillm/tokenizer/patterns.py (split_reference),
   minillm/tokenizer/bpe_train.py (train_incremental). */
#ifndef MINILLM_BPE_H
#define MINILLM_BPE_H
#include <stdint.h>

typedef struct bpe_model bpe_model;
typedef struct bpe_trainer bpe_trainer;

/* Pre-tokenize UTF-8 text with built-in pattern `pattern` (1 GPT-2, 2 cl100k, 3 o200k, 4 Llama
   digits-split); cls is the (0x110000,) uint8 class table. Writes each pre-token's end offset into
   ends (capacity n) and returns how many; -1 if the pattern id is unknown or the UTF-8 is invalid. */
int64_t bpe_split(const uint8_t* cls, int32_t pattern, const uint8_t* text, int64_t n, int64_t* ends);

/* A merge table: pair (left[i], right[i]) merges into merged[i] with priority rank[i] (lower first).
   byte_ids: (256,) token of each single byte. cache_cap: max cached pre-tokens (0 disables). */
bpe_model* bpe_model_new(int64_t n_pairs, const int32_t* left, const int32_t* right, const int32_t* rank,
                         const int32_t* merged, const int32_t* byte_ids, int64_t cache_cap);
/* Register a whole-piece shortcut (tiktoken: a pre-token that is itself a token is emitted as is). */
int32_t bpe_model_add_piece(bpe_model* m, const uint8_t* bytes, int64_t len, int32_t id);
void bpe_model_free(bpe_model* m);

/* Merge one piece of bytes into tokens (no cache); out has capacity len. Returns the count. */
int64_t bpe_merge(const bpe_model* m, const uint8_t* piece, int64_t len, int32_t* out);
/* Encode pieces text[ends[i-1]:ends[i]] (ends[-1] = 0) through the cache; out capacity = ends[n-1]. */
int64_t bpe_encode_pieces(bpe_model* m, const uint8_t* text, const int64_t* ends, int64_t n_pieces,
                          int32_t* out);
/* Split with a built-in pattern and encode; out capacity n. Returns the count, -1 on bad input. */
int64_t bpe_encode(bpe_model* m, const uint8_t* cls, int32_t pattern, const uint8_t* text, int64_t n,
                   int32_t* out);

/* Incremental BPE trainer over unique words: symbols[offsets[w]:offsets[w+1]] with count counts[w]. */
bpe_trainer* bpe_trainer_new(int64_t n_words, const int64_t* offsets, const int32_t* symbols,
                             const int64_t* counts, int32_t next_id);
/* Up to k more merges; writes the merged pairs and their counts. Returns how many were made
   (fewer than k once no pair is left). */
int64_t bpe_trainer_step(bpe_trainer* t, int64_t k, int32_t* out_left, int32_t* out_right, int64_t* out_count);
void bpe_trainer_free(bpe_trainer* t);

#endif
