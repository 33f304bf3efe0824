/* csrc/bpe.c -- byte-level BPE in C: what minillm/tokenizer spends its time on.

   1. Pre-tokenizer scanners: hand-written matchers, one per built-in regex of
      minillm/tokenizer/patterns.py, that return exactly what the backtracking regex returns
      (leftmost alternative wins; greedy, possessive and lookahead as written there). Unicode classes
      come from a (0x110000,) table that patterns.py builds with the `regex` module, so the C and
      Python paths share one Unicode version. Reference: patterns.split_reference (regex.findall).
   2. The merge loop (Sennrich et al. 2016; tiktoken's byte_pair_merge): repeatedly merge the
      adjacent pair with the lowest rank, leftmost on ties. Short pieces use an array scan
      (O(n^2) but cache-friendly); long ones a linked list + binary heap (O(n log n)).
      Reference: bpe._merge_reference.
   3. A pre-token cache (bytes -> token ids) so frequent words are merged once.
   4. The incremental trainer: pair counts and pair positions kept up to date across merges, a
      max-heap with lazy deletion picks the next pair. Reference: bpe_train.train_incremental.
*/
#include "bpe.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Unicode classes (bits of the table built by patterns.py:class_table)                         */
enum { C_L = 1, C_N = 2, C_WS = 4, C_A = 8 /* Lu Lt Lm Lo M */, C_B = 16 /* Ll Lm Lo M */ };

typedef struct {
    const uint8_t* s;
    int64_t n;
    const uint8_t* cls;
} scan_t;

/* Decode the code point at byte i (valid UTF-8 assumed: checked once up front); *len = its bytes. */
static inline int32_t cp_at(const scan_t* S, int64_t i, int* len) {
    const uint8_t* s = S->s + i;
    if (s[0] < 0x80) { *len = 1; return s[0]; }
    if (s[0] < 0xE0) { *len = 2; return ((s[0] & 0x1F) << 6) | (s[1] & 0x3F); }
    if (s[0] < 0xF0) { *len = 3; return ((s[0] & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F); }
    *len = 4;
    return ((s[0] & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static inline int cls_at(const scan_t* S, int64_t i) {
    int len;
    return S->cls[cp_at(S, i, &len)];
}

static inline int64_t next_at(const scan_t* S, int64_t i) {
    uint8_t b = S->s[i];
    return i + (b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4);
}

static inline int64_t prev_at(const scan_t* S, int64_t i) {  /* start of the char before byte i */
    do { i--; } while (i > 0 && (S->s[i] & 0xC0) == 0x80);
    return i;
}

/* Run of chars whose class has any bit of `any` and none of `none`, from byte i; returns its end. */
static inline int64_t run(const scan_t* S, int64_t i, int any, int none) {
    while (i < S->n) {
        int c = cls_at(S, i);
        if (!(c & any) || (c & none)) break;
        i = next_at(S, i);
    }
    return i;
}

static inline int64_t run_punct(const scan_t* S, int64_t i) {  /* [^\s\p{L}\p{N}]+ */
    while (i < S->n && !(cls_at(S, i) & (C_WS | C_L | C_N))) i = next_at(S, i);
    return i;
}

static inline int is_punct(const scan_t* S, int64_t i) {
    return i < S->n && !(cls_at(S, i) & (C_WS | C_L | C_N));
}

static inline int is_crlf_at(const scan_t* S, int64_t i) { return S->s[i] == '\r' || S->s[i] == '\n'; }

/* (?i:x) for the contraction letters: ASCII case-insensitive, plus U+017F LONG S which Unicode
   simple case folding maps to 's' (patterns.py checks this against the regex module). */
static inline int folded(const scan_t* S, int64_t i) {
    if (i >= S->n) return 0;
    int len;
    int32_t c = cp_at(S, i, &len);
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c < 0x80 ? c : 0;
}

/* '(?:[sdmt]|ll|ve|re) after the apostrophe at i; returns the end or -1. */
static int64_t contraction(const scan_t* S, int64_t i, int ignore_case) {
    if (i >= S->n || S->s[i] != '\'') return -1;
    int64_t j = i + 1;
    if (j >= S->n) return -1;
    int c1 = ignore_case ? folded(S, j) : S->s[j];
    int64_t j2 = next_at(S, j);
    if (c1 == 's' || c1 == 'd' || c1 == 'm' || c1 == 't') return j2;
    if (j2 >= S->n) return -1;
    int c2 = ignore_case ? folded(S, j2) : S->s[j2];
    if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) return next_at(S, j2);
    return -1;
}

/* Whitespace alternatives. mode 0 (GPT-2): \s++$ | \s+(?!\S) | \s
   mode 1 (cl100k): \s++$ | \s*[\r\n] | \s+(?!\S) | \s      mode 2 (o200k): \s*[\r\n]+ | \s+(?!\S) | \s+ */
static int64_t whitespace(const scan_t* S, int64_t i, int mode) {
    int64_t e = run(S, i, C_WS, 0);
    if (e == S->n && mode != 2) return e;           /* \s++$ */
    if (mode != 0) {                                 /* \s*[\r\n]: backtrack to the last CR/LF */
        int64_t last = -1;
        for (int64_t k = i; k < e; k = next_at(S, k))
            if (is_crlf_at(S, k)) last = k;
        if (last >= 0) return last + 1;
    }
    if (e == S->n) return e;                         /* o200k: \s+(?!\S) at the end of text */
    int64_t p = prev_at(S, e);                       /* \s+(?!\S): leave the last space for the next word */
    if (p > i) return p;
    return next_at(S, i);                            /* \s (the run is one char long here) */
}

/* GPT-2: '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s */
static int64_t match_gpt2(const scan_t* S, int64_t i) {
    int64_t e = contraction(S, i, 0);
    if (e >= 0) return e;
    int64_t j = (S->s[i] == ' ' && i + 1 < S->n) ? i + 1 : i;   /* the optional leading space */
    int c = cls_at(S, j);
    if (c & C_L) return run(S, j, C_L, 0);
    if (c & C_N) return run(S, j, C_N, 0);
    if (is_punct(S, j)) return run_punct(S, j);
    return whitespace(S, i, 0);
}

/* cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
           |\s++$|\s*[\r\n]|\s+(?!\S)|\s        (the Llama variant has \p{N} instead of \p{N}{1,3}) */
static int64_t match_cl100k(const scan_t* S, int64_t i, int max_digits) {
    int64_t e = contraction(S, i, 1);
    if (e >= 0) return e;
    int c = cls_at(S, i);
    if (c & C_L) return run(S, i, C_L, 0);
    if (!(c & C_N) && !is_crlf_at(S, i)) {       /* possessive one-char prefix, then letters */
        int64_t j = next_at(S, i);
        if (j < S->n && (cls_at(S, j) & C_L)) return run(S, j, C_L, 0);
    }
    if (c & C_N) {
        int64_t j = i;
        for (int k = 0; k < max_digits && j < S->n && (cls_at(S, j) & C_N); k++) j = next_at(S, j);
        return j;
    }
    int64_t j = (S->s[i] == ' ' && is_punct(S, i + 1)) ? i + 1 : i;
    if (is_punct(S, j)) {
        j = run_punct(S, j);
        while (j < S->n && is_crlf_at(S, j)) j++;
        return j;
    }
    return whitespace(S, i, 1);
}

/* o200k: two letter alternatives split on case, then \p{N}{1,3}, punctuation, whitespace:
   [^\r\n\p{L}\p{N}]?[A]*[B]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?  with A = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
   [^\r\n\p{L}\p{N}]?[A]+[B]*(?i:...)?                           B = [\p{Ll}\p{Lm}\p{Lo}\p{M}]
   \p{N}{1,3} |  ?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+ */
static int64_t o200k_suffix(const scan_t* S, int64_t e) {
    int64_t k = contraction(S, e, 1);
    return k >= 0 ? k : e;
}

static int64_t match_o200k(const scan_t* S, int64_t i) {
    int c = cls_at(S, i);
    int prefix_ok = !(c & (C_L | C_N)) && !is_crlf_at(S, i);
    for (int alt = 1; alt <= 2; alt++) {
        for (int with_prefix = 1; with_prefix >= 0; with_prefix--) {
            if (with_prefix && !prefix_ok) continue;
            int64_t j = with_prefix ? next_at(S, i) : i;
            if (j >= S->n) continue;
            if (alt == 1) {
                /* A* is greedy: take the longest A run, then give chars back until a B follows */
                int64_t a_end = run(S, j, C_A, 0), p = a_end;
                for (;;) {
                    if (p < S->n && (cls_at(S, p) & C_B)) return o200k_suffix(S, run(S, p, C_B, 0));
                    if (p == j) break;
                    p = prev_at(S, p);
                }
            } else if (cls_at(S, j) & C_A) {
                return o200k_suffix(S, run(S, run(S, j, C_A, 0), C_B, 0));
            }
        }
    }
    if (c & C_N) {
        int64_t j = i;
        for (int k = 0; k < 3 && j < S->n && (cls_at(S, j) & C_N); k++) j = next_at(S, j);
        return j;
    }
    int64_t j = (S->s[i] == ' ' && is_punct(S, i + 1)) ? i + 1 : i;
    if (is_punct(S, j)) {
        j = run_punct(S, j);
        while (j < S->n && (is_crlf_at(S, j) || S->s[j] == '/')) j++;
        return j;
    }
    return whitespace(S, i, 2);
}

static int utf8_valid(const uint8_t* s, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        int len = b < 0x80 ? 1 : (b >= 0xC2 && b < 0xE0) ? 2 : (b >= 0xE0 && b < 0xF0) ? 3 : (b >= 0xF0 && b < 0xF5) ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (int k = 1; k < len; k++) if ((s[i + k] & 0xC0) != 0x80) return 0;
        /* reject overlong forms, surrogates and code points past U+10FFFF: the class table has
           0x110000 entries and is indexed by the decoded code point */
        int32_t cp = len == 1 ? b : len == 2 ? ((b & 0x1F) << 6) | (s[i + 1] & 0x3F)
                   : len == 3 ? ((b & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F)
                   : ((b & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += len;
    }
    return 1;
}

static int64_t split_into(const uint8_t* cls, int32_t pattern, const uint8_t* text, int64_t n, int64_t* ends) {
    if (pattern < 1 || pattern > 4 || !utf8_valid(text, n)) return -1;
    scan_t S = {text, n, cls};
    int64_t count = 0, i = 0;
    while (i < n) {
        int64_t e = pattern == 1 ? match_gpt2(&S, i) : pattern == 3 ? match_o200k(&S, i)
                                                                  : match_cl100k(&S, i, pattern == 4 ? 1 : 3);
        ends[count++] = e;
        i = e;
    }
    return count;
}

int64_t bpe_split(const uint8_t* cls, int32_t pattern, const uint8_t* text, int64_t n, int64_t* ends) {
    return split_into(cls, pattern, text, n, ends);
}

/* ------------------------------------------------------------------------------------------ */
/* Hash tables                                                                                 */
static inline uint64_t mix64(uint64_t x) {  /* splitmix64 finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline uint64_t hash_bytes(const uint8_t* p, int64_t n) {  /* FNV-1a, then mixed */
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return mix64(h ^ (uint64_t)n);
}

typedef struct { uint64_t key; int32_t rank, merged; } pair_slot;   /* key 0 = empty */
typedef struct { uint64_t hash; int64_t off; int32_t len, nval; } bytes_slot;  /* len -1 = empty */

struct bpe_model {
    pair_slot* pairs; uint64_t pair_mask;
    int32_t byte_ids[256];
    /* whole-piece shortcut: bytes -> id */
    bytes_slot* pieces; uint64_t piece_mask; int64_t n_pieces; uint8_t* piece_pool; int64_t piece_pool_len, piece_pool_cap;
    /* cache: bytes -> ids, cleared when full */
    bytes_slot* cache; uint64_t cache_mask; int64_t n_cache, cache_cap;
    uint8_t* cache_pool; int64_t cache_pool_len, cache_pool_cap;
    int32_t* scratch; int64_t scratch_cap;  /* work space of the merge loop */
};

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static inline const pair_slot* pair_get(const bpe_model* m, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b), i = mix64(key) & m->pair_mask;
    while (m->pairs[i].key) {
        if (m->pairs[i].key == key) return &m->pairs[i];
        i = (i + 1) & m->pair_mask;
    }
    return NULL;
}

static uint64_t pow2_at_least(uint64_t n) { uint64_t c = 16; while (c < n) c <<= 1; return c; }

bpe_model* bpe_model_new(int64_t n_pairs, const int32_t* left, const int32_t* right, const int32_t* rank,
                         const int32_t* merged, const int32_t* byte_ids, int64_t cache_cap) {
    bpe_model* m = calloc(1, sizeof(bpe_model));
    if (!m) return NULL;
    uint64_t cap = pow2_at_least((uint64_t)n_pairs * 2 + 1);
    m->pairs = calloc(cap, sizeof(pair_slot));
    m->pair_mask = cap - 1;
    memcpy(m->byte_ids, byte_ids, sizeof(m->byte_ids));
    m->piece_mask = 15;
    m->pieces = malloc(16 * sizeof(bytes_slot));
    m->cache_cap = cache_cap;
    uint64_t ccap = pow2_at_least((uint64_t)(cache_cap > 0 ? cache_cap : 1) * 2);
    m->cache = malloc(ccap * sizeof(bytes_slot));
    m->cache_mask = ccap - 1;
    if (!m->pairs || !m->pieces || !m->cache) { bpe_model_free(m); return NULL; }
    for (uint64_t i = 0; i < 16; i++) m->pieces[i].len = -1;
    for (uint64_t i = 0; i < ccap; i++) m->cache[i].len = -1;
    for (int64_t k = 0; k < n_pairs; k++) {
        uint64_t key = pair_key(left[k], right[k]), i = mix64(key) & m->pair_mask;
        while (m->pairs[i].key && m->pairs[i].key != key) i = (i + 1) & m->pair_mask;
        if (m->pairs[i].key && m->pairs[i].rank <= rank[k]) continue;  /* keep the best rank */
        m->pairs[i].key = key; m->pairs[i].rank = rank[k]; m->pairs[i].merged = merged[k];
    }
    return m;
}

void bpe_model_free(bpe_model* m) {
    if (!m) return;
    free(m->pairs); free(m->pieces); free(m->piece_pool); free(m->cache); free(m->cache_pool); free(m->scratch);
    free(m);
}

static int grow_pool(uint8_t** pool, int64_t* cap, int64_t need) {
    if (need <= *cap) return 1;
    int64_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    uint8_t* p = realloc(*pool, c);
    if (!p) return 0;
    *pool = p; *cap = c;
    return 1;
}

static const bytes_slot* bytes_find(const bytes_slot* t, uint64_t mask, const uint8_t* pool, const uint8_t* s,
                                    int64_t n, uint64_t h) {
    uint64_t i = h & mask;
    while (t[i].len >= 0) {
        if (t[i].hash == h && t[i].len == n && memcmp(pool + t[i].off, s, n) == 0) return &t[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

int32_t bpe_model_add_piece(bpe_model* m, const uint8_t* bytes, int64_t len, int32_t id) {
    if ((uint64_t)(m->n_pieces + 1) * 2 > m->piece_mask + 1) {  /* rehash at load factor 1/2 */
        uint64_t cap = (m->piece_mask + 1) * 2;
        bytes_slot* t = malloc(cap * sizeof(bytes_slot));
        if (!t) return -1;
        for (uint64_t i = 0; i < cap; i++) t[i].len = -1;
        for (uint64_t i = 0; i <= m->piece_mask; i++) {
            if (m->pieces[i].len < 0) continue;
            uint64_t j = m->pieces[i].hash & (cap - 1);
            while (t[j].len >= 0) j = (j + 1) & (cap - 1);
            t[j] = m->pieces[i];
        }
        free(m->pieces);
        m->pieces = t; m->piece_mask = cap - 1;
    }
    uint64_t h = hash_bytes(bytes, len);
    if (bytes_find(m->pieces, m->piece_mask, m->piece_pool, bytes, len, h)) return 0;
    if (!grow_pool(&m->piece_pool, &m->piece_pool_cap, m->piece_pool_len + len)) return -1;
    memcpy(m->piece_pool + m->piece_pool_len, bytes, len);
    uint64_t i = h & m->piece_mask;
    while (m->pieces[i].len >= 0) i = (i + 1) & m->piece_mask;
    m->pieces[i] = (bytes_slot){h, m->piece_pool_len, (int32_t)len, id};
    m->piece_pool_len += len;
    m->n_pieces++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The merge loop                                                                              */
#define NONE_RANK 0x7fffffff

static inline int32_t rank_of(const bpe_model* m, int32_t a, int32_t b, int32_t* merged) {
    const pair_slot* p = pair_get(m, a, b);
    if (!p) return NONE_RANK;
    *merged = p->merged;
    return p->rank;
}

/* Short pieces: tok[0..n) with the rank of each adjacent pair kept in r[]; merge the minimum,
   recompute the two neighbouring ranks, shift the tail left. */
static int64_t merge_short(const bpe_model* m, int32_t* tok, int64_t n, int32_t* r, int32_t* mg) {
    for (int64_t i = 0; i + 1 < n; i++) r[i] = rank_of(m, tok[i], tok[i + 1], &mg[i]);
    while (n > 1) {
        int64_t best = -1;
        int32_t best_rank = NONE_RANK;
        for (int64_t i = 0; i + 1 < n; i++)
            if (r[i] < best_rank) { best_rank = r[i]; best = i; }   /* strict <: leftmost on ties */
        if (best < 0) break;
        tok[best] = mg[best];
        memmove(tok + best + 1, tok + best + 2, (n - best - 2) * sizeof(int32_t));
        memmove(r + best + 1, r + best + 2, (n - best - 2) * sizeof(int32_t));
        memmove(mg + best + 1, mg + best + 2, (n - best - 2) * sizeof(int32_t));
        n--;
        if (best > 0) r[best - 1] = rank_of(m, tok[best - 1], tok[best], &mg[best - 1]);
        if (best + 1 < n) r[best] = rank_of(m, tok[best], tok[best + 1], &mg[best]);
    }
    return n;
}

/* Long pieces: doubly linked list over positions, min-heap of (rank, position) with lazy deletion. */
typedef struct { int32_t rank, pos, a, b; } heap_ent;

static inline int heap_less(const heap_ent* x, const heap_ent* y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_ent* h, int64_t* n, heap_ent e) {
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p]; i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent* h, int64_t* n) {
    heap_ent top = h[0], last = h[--(*n)];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c]; i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static int64_t merge_long(const bpe_model* m, int32_t* tok, int64_t n) {
    int32_t* nxt = malloc(n * sizeof(int32_t));
    int32_t* prv = malloc(n * sizeof(int32_t));
    heap_ent* h = malloc((2 * n + 1) * sizeof(heap_ent));  /* <= n-1 initial + 2 per merge */
    if (!nxt || !prv || !h) { free(nxt); free(prv); free(h); return -1; }
    int64_t hn = 0;
    for (int64_t i = 0; i < n; i++) { nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1; prv[i] = (int32_t)i - 1; }
    int32_t mg;
    for (int64_t i = 0; i + 1 < n; i++) {
        int32_t r = rank_of(m, tok[i], tok[i + 1], &mg);
        if (r != NONE_RANK) heap_push(h, &hn, (heap_ent){r, (int32_t)i, tok[i], tok[i + 1]});
    }
    while (hn > 0) {
        heap_ent e = heap_pop(h, &hn);
        int32_t p = e.pos, q = nxt[p];
        if (tok[p] != e.a || q < 0 || tok[q] != e.b) continue;  /* stale: a neighbour changed */
        rank_of(m, e.a, e.b, &mg);
        tok[p] = mg; tok[q] = -1;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = p;
        if (prv[p] >= 0) {
            int32_t r = rank_of(m, tok[prv[p]], tok[p], &mg);
            if (r != NONE_RANK) heap_push(h, &hn, (heap_ent){r, prv[p], tok[prv[p]], tok[p]});
        }
        if (nxt[p] >= 0) {
            int32_t r = rank_of(m, tok[p], tok[nxt[p]], &mg);
            if (r != NONE_RANK) heap_push(h, &hn, (heap_ent){r, p, tok[p], tok[nxt[p]]});
        }
    }
    int64_t k = 0;
    for (int64_t i = 0; i >= 0 && i < n; i = nxt[i]) tok[k++] = tok[i];
    free(nxt); free(prv); free(h);
    return k;
}

#define SHORT_PIECE 256

static int64_t merge_piece(const bpe_model* m, const uint8_t* piece, int64_t len, int32_t* out) {
    if (m->n_pieces) {  /* tiktoken: a piece that is a whole token is emitted directly */
        const bytes_slot* s = bytes_find(m->pieces, m->piece_mask, m->piece_pool, piece, len, hash_bytes(piece, len));
        if (s) { out[0] = s->nval; return 1; }
    }
    for (int64_t i = 0; i < len; i++) out[i] = m->byte_ids[piece[i]];
    if (len <= SHORT_PIECE) {
        int32_t r[SHORT_PIECE], mg[SHORT_PIECE];
        return merge_short(m, out, len, r, mg);
    }
    return merge_long(m, out, len);
}

int64_t bpe_merge(const bpe_model* m, const uint8_t* piece, int64_t len, int32_t* out) {
    return merge_piece(m, piece, len, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Cached encode                                                                               */
#define CACHE_MAX_PIECE 64   /* longer pieces are rare and would crowd the cache */

static void cache_clear(bpe_model* m) {
    for (uint64_t i = 0; i <= m->cache_mask; i++) m->cache[i].len = -1;
    m->n_cache = 0; m->cache_pool_len = 0;
}

static int64_t encode_piece_cached(bpe_model* m, const uint8_t* p, int64_t len, int32_t* out) {
    if (m->cache_cap <= 0 || len > CACHE_MAX_PIECE) return merge_piece(m, p, len, out);
    uint64_t h = hash_bytes(p, len);
    const bytes_slot* s = bytes_find(m->cache, m->cache_mask, m->cache_pool, p, len, h);
    if (s) {
        memcpy(out, m->cache_pool + s->off + ((s->len + 3) & ~3), s->nval * sizeof(int32_t));
        return s->nval;
    }
    int64_t k = merge_piece(m, p, len, out);
    if (k < 0) return k;
    if (m->n_cache >= m->cache_cap) cache_clear(m);  /* bounded memory: start over when full */
    int64_t key_bytes = (len + 3) & ~3;              /* ids stay 4-byte aligned in the pool */
    if (!grow_pool(&m->cache_pool, &m->cache_pool_cap, m->cache_pool_len + key_bytes + k * 4)) return k;
    memcpy(m->cache_pool + m->cache_pool_len, p, len);
    memcpy(m->cache_pool + m->cache_pool_len + key_bytes, out, k * sizeof(int32_t));
    uint64_t i = h & m->cache_mask;
    while (m->cache[i].len >= 0) i = (i + 1) & m->cache_mask;
    m->cache[i] = (bytes_slot){h, m->cache_pool_len, (int32_t)len, (int32_t)k};
    m->cache_pool_len += key_bytes + k * 4;
    m->n_cache++;
    return k;
}

int64_t bpe_encode_pieces(bpe_model* m, const uint8_t* text, const int64_t* ends, int64_t n_pieces, int32_t* out) {
    int64_t k = 0, start = 0;
    for (int64_t i = 0; i < n_pieces; i++) {
        int64_t r = encode_piece_cached(m, text + start, ends[i] - start, out + k);
        if (r < 0) return -1;
        k += r;
        start = ends[i];
    }
    return k;
}

int64_t bpe_encode(bpe_model* m, const uint8_t* cls, int32_t pattern, const uint8_t* text, int64_t n, int32_t* out) {
    if (pattern < 1 || pattern > 4 || !utf8_valid(text, n)) return -1;
    scan_t S = {text, n, cls};
    int64_t k = 0, i = 0;
    while (i < n) {
        int64_t e = pattern == 1 ? match_gpt2(&S, i) : pattern == 3 ? match_o200k(&S, i)
                                                                  : match_cl100k(&S, i, pattern == 4 ? 1 : 3);
        int64_t r = encode_piece_cached(m, text + i, e - i, out + k);
        if (r < 0) return -1;
        k += r;
        i = e;
    }
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* Incremental trainer                                                                         */
typedef struct { uint64_t key; int64_t count; int32_t* occ; int32_t n_occ, cap_occ, pushed_at; } tpair;
typedef struct { int64_t count; int32_t a, b; } theap;

struct bpe_trainer {
    int32_t *sym, *nxt, *prv, *word;   /* per position; sym -1 = merged away */
    const int64_t* counts;             /* per word (owned by the caller's array, copied below) */
    int64_t* wcount;
    tpair* pairs; uint64_t mask; int64_t n_pairs;
    theap* heap; int64_t hn, hcap;
    int32_t next_id;
    int32_t* touched; int64_t n_touched, cap_touched;
};

/* max-heap on count; ties: smallest (a, b) first -- the documented tie-break of bpe_train.py */
static inline int theap_before(const theap* x, const theap* y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int theap_push(bpe_trainer* t, theap e) {
    if (t->hn == t->hcap) {
        int64_t c = t->hcap ? t->hcap * 2 : 1024;
        theap* h = realloc(t->heap, c * sizeof(theap));
        if (!h) return 0;
        t->heap = h; t->hcap = c;
    }
    int64_t i = t->hn++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!theap_before(&e, &t->heap[p])) break;
        t->heap[i] = t->heap[p]; i = p;
    }
    t->heap[i] = e;
    return 1;
}

static theap theap_pop(bpe_trainer* t) {
    theap top = t->heap[0], last = t->heap[--t->hn];
    int64_t i = 0, n = t->hn;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && theap_before(&t->heap[c + 1], &t->heap[c])) c++;
        if (!theap_before(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c]; i = c;
    }
    if (n > 0) t->heap[i] = last;
    return top;
}

static tpair* tpair_get(bpe_trainer* t, int32_t a, int32_t b, int create) {
    uint64_t key = pair_key(a, b);
    if (create && (uint64_t)(t->n_pairs + 1) * 2 > t->mask + 1) {
        uint64_t cap = (t->mask + 1) * 2;
        tpair* p = calloc(cap, sizeof(tpair));
        if (!p) return NULL;
        for (uint64_t i = 0; i <= t->mask; i++) {
            if (!t->pairs[i].key) continue;
            uint64_t j = mix64(t->pairs[i].key) & (cap - 1);
            while (p[j].key) j = (j + 1) & (cap - 1);
            p[j] = t->pairs[i];
        }
        free(t->pairs);
        t->pairs = p; t->mask = cap - 1;
    }
    uint64_t i = mix64(key) & t->mask;
    while (t->pairs[i].key) {
        if (t->pairs[i].key == key) return &t->pairs[i];
        i = (i + 1) & t->mask;
    }
    if (!create) return NULL;
    t->pairs[i].key = key;
    t->n_pairs++;
    return &t->pairs[i];
}

static int tpair_add(bpe_trainer* t, int32_t a, int32_t b, int64_t w, int32_t pos) {
    tpair* p = tpair_get(t, a, b, 1);
    if (!p) return 0;
    p->count += w;
    if (p->n_occ == p->cap_occ) {
        int32_t c = p->cap_occ ? p->cap_occ * 2 : 4;
        int32_t* o = realloc(p->occ, c * sizeof(int32_t));
        if (!o) return 0;
        p->occ = o; p->cap_occ = c;
    }
    p->occ[p->n_occ++] = pos;
    return 1;
}

bpe_trainer* bpe_trainer_new(int64_t n_words, const int64_t* offsets, const int32_t* symbols,
                             const int64_t* counts, int32_t next_id) {
    bpe_trainer* t = calloc(1, sizeof(bpe_trainer));
    if (!t) return NULL;
    int64_t total = offsets[n_words];
    t->sym = malloc((total + 1) * sizeof(int32_t));
    t->nxt = malloc((total + 1) * sizeof(int32_t));
    t->prv = malloc((total + 1) * sizeof(int32_t));
    t->word = malloc((total + 1) * sizeof(int32_t));
    t->wcount = malloc((n_words + 1) * sizeof(int64_t));
    t->mask = 1023;
    t->pairs = calloc(1024, sizeof(tpair));
    t->next_id = next_id;
    if (!t->sym || !t->nxt || !t->prv || !t->word || !t->wcount || !t->pairs) { bpe_trainer_free(t); return NULL; }
    memcpy(t->wcount, counts, n_words * sizeof(int64_t));
    for (int64_t w = 0; w < n_words; w++) {
        for (int64_t i = offsets[w]; i < offsets[w + 1]; i++) {
            t->sym[i] = symbols[i];
            t->word[i] = (int32_t)w;
            t->prv[i] = i > offsets[w] ? (int32_t)(i - 1) : -1;
            t->nxt[i] = i + 1 < offsets[w + 1] ? (int32_t)(i + 1) : -1;
            if (i + 1 < offsets[w + 1] && !tpair_add(t, symbols[i], symbols[i + 1], counts[w], (int32_t)i)) {
                bpe_trainer_free(t); return NULL;
            }
        }
    }
    for (uint64_t i = 0; i <= t->mask; i++) {
        tpair* p = &t->pairs[i];
        if (p->key && p->count > 0) {
            int32_t a = (int32_t)((p->key - 1) >> 32), b = (int32_t)((p->key - 1) & 0xffffffffu);
            if (!theap_push(t, (theap){p->count, a, b})) { bpe_trainer_free(t); return NULL; }
        }
    }
    return t;
}

void bpe_trainer_free(bpe_trainer* t) {
    if (!t) return;
    if (t->pairs) for (uint64_t i = 0; i <= t->mask; i++) free(t->pairs[i].occ);
    free(t->sym); free(t->nxt); free(t->prv); free(t->word); free(t->wcount); free(t->pairs);
    free(t->heap); free(t->touched);
    free(t);
}

static int touch(bpe_trainer* t, int32_t a, int32_t b) {  /* remember a pair that gained counts */
    if (t->n_touched + 2 > t->cap_touched) {
        int64_t c = t->cap_touched ? t->cap_touched * 2 : 256;
        int32_t* p = realloc(t->touched, c * sizeof(int32_t));
        if (!p) return 0;
        t->touched = p; t->cap_touched = c;
    }
    t->touched[t->n_touched++] = a;
    t->touched[t->n_touched++] = b;
    return 1;
}

/* Merge every occurrence of (a, b) into z, left to right; keep counts and positions current. */
static int merge_pair(bpe_trainer* t, int32_t a, int32_t b, int32_t z) {
    tpair* p = tpair_get(t, a, b, 0);
    int32_t* occ = p->occ;   /* take the list: adding pairs below may rehash the table */
    int32_t n_occ = p->n_occ;
    p->occ = NULL; p->n_occ = p->cap_occ = 0;
    t->n_touched = 0;
    for (int32_t k = 0; k < n_occ; k++) {
        int32_t i = occ[k], j = t->nxt[i];
        if (t->sym[i] != a || j < 0 || t->sym[j] != b) continue;   /* stale position */
        int64_t w = t->wcount[t->word[i]];
        int32_t l = t->prv[i], r = t->nxt[j];
        if (l >= 0) {
            tpair_get(t, t->sym[l], a, 0)->count -= w;
            if (!tpair_add(t, t->sym[l], z, w, l) || !touch(t, t->sym[l], z)) { free(occ); return 0; }
        }
        if (r >= 0) {
            tpair_get(t, b, t->sym[r], 0)->count -= w;
            if (!tpair_add(t, z, t->sym[r], w, i) || !touch(t, z, t->sym[r])) { free(occ); return 0; }
        }
        t->sym[i] = z; t->sym[j] = -1;
        t->nxt[i] = r;
        if (r >= 0) t->prv[r] = i;
    }
    free(occ);
    tpair_get(t, a, b, 0)->count = 0;
    /* pairs that contain z are new: push each once with its final count */
    for (int64_t k = 0; k < t->n_touched; k += 2) {
        tpair* q = tpair_get(t, t->touched[k], t->touched[k + 1], 0);
        if (q->count > 0 && q->pushed_at != z) {
            q->pushed_at = z;
            if (!theap_push(t, (theap){q->count, t->touched[k], t->touched[k + 1]})) return 0;
        }
    }
    return 1;
}

int64_t bpe_trainer_step(bpe_trainer* t, int64_t k, int32_t* out_left, int32_t* out_right, int64_t* out_count) {
    int64_t done = 0;
    while (done < k && t->hn > 0) {
        theap e = theap_pop(t);
        tpair* p = tpair_get(t, e.a, e.b, 0);
        if (!p || p->count <= 0) continue;
        if (p->count != e.count) {            /* stale upper bound: re-queue with the true count */
            if (!theap_push(t, (theap){p->count, e.a, e.b})) return -1;
            continue;
        }
        int32_t z = t->next_id++;
        if (!merge_pair(t, e.a, e.b, z)) return -1;
        out_left[done] = e.a; out_right[done] = e.b; out_count[done] = e.count;
        done++;
    }
    return done;
}
