/* csrc/decode.c -- a step of new tokens through every block, in one parallel region. See decode.h.
 * Reference: minillm/kernels/reference.py:decode_step and paged_step.
 *
 * At decode a block is about ten small operations. Run from Python, each is a wrapper call, and
 * each GEMV or attention call also wakes the sleeping second OpenMP thread (OMP_WAIT_POLICY is
 * PASSIVE, see kernels/native.py): for a 12-layer model that is ~300 calls and ~70 wake-ups per
 * token, a few milliseconds next to ~25 ms of weight streaming. Here the threads wake once per
 * step and meet at barriers between the phases of each block. A step runs M rows (tokens), each
 * of some sequence at its own position; the serving engine's step is M decode tokens of M
 * sequences, plus the chunks of prompts being prefilled; a contiguous cache is the special case
 * of one sequence whose cache is one block (kernels.decode_step, one row).
 *
 *   1. rows: h = norm1(x)                row m on thread m % nt (MY_ROWS)
 *   2. all: qkv = h W_qkv^T              tasks of TASK_ROWS rows of the q, k, v weights, each
 *                                        for all M rows of h (a weight row is read once per step)
 *   3a. all: per (row, kv head), add the biases, rotate q and k (RoPE), store k and v at the
 *      row's slot of the cache
 *   3b. all: per (row, kv head), attend over the row's positions 0..pos through its block table
 *   4. all: o = att W_o^T                tasks of rows
 *   5. rows: x += o + b_o;  h = norm2(x)
 *   6. all: gate/up = h W^T              tasks of rows
 *   7. all: act = swiglu(gate, up) or gelu(up), each thread its share of the F channels
 *   8. all: d = act W_down^T             tasks of rows;   then rows: x += d + b_down
 *
 * and, when logits are asked for, the head on the rows that need it: h = norm_f(x), then all:
 * logits = h W_head^T.
 * A step of one row (a decode step, M = 1) has nothing to share out in the row-wise phases, and
 * there a barrier cost more than the work (a thread waited ~3 us while the other normed and
 * quantized 768 floats). So every thread runs phases 1, 5, the residual adds and the final norm
 * itself, on its own copy of x, h and h quantized (rows_t), the same float operations in the same
 * order, and goes on to the next GEMV without a barrier; thread 0 writes x back at the end. Each
 * kv head's store (3a) and attention (3b) are then one task: no other row needs its key first
 * (up to ATT_PIECE positions; a longer row keeps the two phases). That leaves 6 barriers per
 * block instead of 9, each where a GEMV's outputs are gathered. Thread 0 starts on the first
 * phase at once; the others join as the kernel wakes them (~50 us on a VM's sleeping core).
 * Before the first phase, a thread that finds itself on a core another thread of the team is on
 * moves to a free one (leave_shared_core).
 *
 * Every phase calls the same serial code as the per-operation kernels (parts.inc), in the same
 * order of float operations, so a step equals the Python path's result; a weight may be float32
 * or quantized (the fused dequant-GEMV rows of quant.c). Tasks are handed out through an atomic
 * counter per phase: a thread that loses its core for a moment on a shared machine leaves its tasks
 * to the other instead of holding up the barrier.
 *
 * decode_run runs a generation's decode steps, one row each, in one parallel region: between two
 * steps the threads meet at barriers (each takes the argmax of its share of the logits, thread 0
 * combines them, asks the caller's choice if any, and sets up the next step) instead of leaving the
 * region, so no token wakes a thread, allocates or returns to the caller. Both entry points share
 * the setup (team_alloc) and the blocks (run_blocks).
 *
 * The barriers spin (with the pause instruction) because phases are a few to a few hundred
 * microseconds long and both threads are busy in them; past SPIN_LIMIT pauses a waiter sleeps in
 * the kernel (futex) until the last thread arrives, so a thread whose partner was descheduled, or
 * shares its core, does not burn the core the partner needs. */
#define _GNU_SOURCE  /* syscall() under -std=c11 */
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include "decode.h"
#include "ggml_blocks.h"
#include "parts.inc"
#include "qtiles.h"
#include "half.inc"

#define TASK_ROWS 32      /* rows of a weight per task: 96 KB at K = 768 */
#define RUN_ROWS (TASK_ROWS / 4)   /* at M = 1 (float32 or int8 activations) a task is RUN_ROWS rows of each
                                      quarter of W: the threads' segments of tasks are then four runs each */
#define SPIN_LIMIT 2000   /* pauses (~50 us) before a waiting thread goes to sleep */
enum { LN1_W, LN1_B, Q_B, K_B, V_B, O_B, LN2_W, LN2_B, GATE_B, UP_B, DOWN_B, K_CACHE, V_CACHE };
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN };  /* the linears of a layer */
enum { PH_QKV, PH_STORE, PH_HEADS, PH_O, PH_UP, PH_DOWN, N_PHASES };  /* phases that hand out tasks */

typedef struct {
    _Alignas(64) atomic_int arrived;
    _Alignas(64) atomic_int round;    /* bumped by the last thread to arrive */
    atomic_int sleepers;              /* waiters blocked in the kernel */
} barrier_t;

/* Block until *word != value (or a spurious wake-up; the caller re-checks), and wake every waiter. */
static void wait_while_equal(atomic_int* word, int value) {
#if defined(__linux__)
    syscall(SYS_futex, (int*)word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)word, (void)value;
    sched_yield();
#endif
}

static void wake_all(atomic_int* word) {
#if defined(__linux__)
    syscall(SYS_futex, (int*)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

/* Spin, then sleep. A waiter that kept spinning (or only yielded) could hold the very core its
 * partner needs: when both threads land on one core, which happens on a shared machine, a step took
 * ~5 ms instead of 0.2. The sleeper count and the round are sequentially consistent, so either the
 * last arriver sees a sleeper and wakes it, or the sleeper sees the new round and never blocks. */
static void barrier_wait(barrier_t* b, int nthreads) {
    if (nthreads == 1) return;
    const int r = atomic_load(&b->round);
    if (atomic_fetch_add(&b->arrived, 1) == nthreads - 1) {
        atomic_store(&b->arrived, 0);
        atomic_store(&b->round, r + 1);                       /* releases the others */
        if (atomic_load(&b->sleepers) > 0) wake_all(&b->round);
        return;
    }
    for (int spins = 0; atomic_load(&b->round) == r; spins++) {
        if (spins < SPIN_LIMIT) {
            CPU_RELAX();
            continue;
        }
        atomic_fetch_add(&b->sleepers, 1);
        if (atomic_load(&b->round) == r) wait_while_equal(&b->round, r);
        atomic_fetch_sub(&b->sleepers, 1);
    }
}

/* Move this thread off a core another thread of the team is on. The kernel wakes a sleeping
 * OpenMP worker on the core of the thread that woke it, so a region often starts with both threads
 * on one core (every call, in a loop of short steps here) until the load balancer moves one; with
 * short steps that never happens, and the step runs at one core's speed, slower than one thread.
 * The thread pins itself to a free core, which migrates it at once, and then restores its affinity
 * mask, so it stays free to move. Linux only; elsewhere a no-op. cpus: the team's cores. */
static int shares_core_below(const int* cpus, int t) {  /* a lower thread is on t's core */
    for (int j = 0; j < t; j++)
        if (cpus[j] == cpus[t]) return 1;
    return 0;
}

static void leave_shared_core(int tid, int nt, const int* cpus) {
#if defined(__linux__)
    if (cpus[tid] < 0 || !shares_core_below(cpus, tid)) return;   /* the lowest thread stays put */
    int rank = 0;                                  /* threads below this one that move too */
    for (int j = 0; j < tid; j++) rank += shares_core_below(cpus, j);
    cpu_set_t mask, one;
    if (sched_getaffinity(0, sizeof mask, &mask)) return;
    for (int c = 0, free_seen = 0; c < CPU_SETSIZE; c++) {
        int used = 0;
        for (int j = 0; j < nt; j++) used |= cpus[j] == c;
        if (!CPU_ISSET(c, &mask) || used || free_seen++ < rank) continue;  /* the rank-th free core */
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        if (sched_setaffinity(0, sizeof one, &one) == 0) sched_setaffinity(0, sizeof mask, &mask);
        return;
    }
#else
    (void)tid, (void)nt, (void)cpus;
#endif
}

/* out (M, ldo) = x (M, K) W_i^T for the weights of a group, their outputs side by side in each row
 * of out: tasks of TASK_ROWS rows of a weight, each for all M rows of x, taken through *next
 * (next_task) until none are left. A quantized W needs sums of x per block (quant.c), or x
 * quantized to int8 (qgemm.c, ggml blocks with GGML_ACT_INT8, the same for every such W of the
 * group); each thread
 * computes them, into its own buffer sums, the first time it needs them -- unless qx is given: x
 * quantized (qgemm.c's layout for M rows) by the phase that wrote it, each thread its own part. The kernels that read one
 * row of x at a time (quant.c, ggml_blocks.c's exact rows) take the M rows in turn, the sums of
 * each recomputed per task when M > 1. */
#define QX_READY (-2)

/* The task counters of a phase: its tasks are cut into up to SEGS_MAX contiguous segments, each
 * counted on a cache line of its own. (Packed into one word, the two threads' counters shared a
 * line that moved between the cores at every task: an atomic add that missed, every ~1.5 us of
 * work at M = 1.) The phases without segments count in segment 0. */
#define SEGS_MAX 8
typedef struct {
    _Alignas(64) atomic_long n;
} line_counter_t;

static int segments(int nt) { return nt < SEGS_MAX ? nt : SEGS_MAX; }

/* The next task of a phase for this thread, or -1 when none is left. The ntasks tasks are cut into
 * segs contiguous segments, segment s counted by c[s]; a thread starts on its own segment (*seg =
 * its number % segs) and takes its tasks front to back, then those left in the others (a thread
 * that lost its core leaves its tasks to the rest). Each thread streams one contiguous run of
 * rows: tasks dealt alternately from one counter were 15-20% slower at M = 1 (4-bit weights,
 * measured), as each thread's run of rows restarted every TASK_ROWS rows, where the prefetchers
 * lost their lead. */
static int64_t next_task(line_counter_t* c, int64_t ntasks, int segs, int* seg, int* left) {
    const int64_t per = (ntasks + segs - 1) / segs;
    for (; *left > 0; *seg = (*seg + 1) % segs, (*left)--) {
        const int64_t lo = *seg * per, hi = lo + per < ntasks ? lo + per : ntasks;
        if (lo >= hi) continue;
        const int64_t k = atomic_fetch_add_explicit(&c[*seg].n, 1, memory_order_relaxed);
        if (lo + k < hi) return lo + k;
    }
    return -1;
}

static int int8_act(const decode_linear_t* W) {   /* ggml blocks read with int8 activations (qgemm.c) */
    return W->w && W->fmt >= GGML_DECODE_FMT && ((W->fmt - GGML_DECODE_FMT) & GGML_ACT_INT8);
}

static int tiles_w(const decode_linear_t* W) {    /* int8 activations from row tiles (qtiles.h) */
    return int8_act(W) && ((W->fmt - GGML_DECODE_FMT) & GGML_TILES);
}

/* a weight's tasks: TASK_ROWS rows each; at M = 1 from row tiles, one group of 16 rows of each of
   QTILES_RUNS parts of W (a thread's tasks then stream QTILES_RUNS runs, as RUN_ROWS below) */
static int64_t tasks_of(const decode_linear_t* W, int64_t N, int64_t M) {
    if (M == 1 && tiles_w(W)) return ((N + 15) / 16 + QTILES_RUNS - 1) / QTILES_RUNS;
    return (N + TASK_ROWS - 1) / TASK_ROWS;
}

static void gemv_tasks(float* out, int64_t ldo, const float* x, int64_t M, const decode_linear_t* const* ws,
                       const int64_t* Ns, int count, int64_t K, line_counter_t* next, float* sums, const void* qx) {
    int64_t ntasks = 0;
    for (int i = 0; i < count; i++) ntasks += tasks_of(ws[i], Ns[i], M);
    int have_sums = -1;                       /* the weight whose sums are in `sums` (M = 1) */
    const int segs = segments(omp_get_num_threads());
    int seg = omp_get_thread_num() % segs, left = segs;
    for (int64_t t; (t = next_task(next, ntasks, segs, &seg, &left)) >= 0;) {
        int i = 0;
        int64_t offset = 0;                   /* task t is task t' of weight i */
        while (t >= tasks_of(ws[i], Ns[i], M)) {
            t -= tasks_of(ws[i], Ns[i], M);
            offset += Ns[i];
            i++;
        }
        const int64_t n0 = t * TASK_ROWS, nb = Ns[i] - n0 < TASK_ROWS ? Ns[i] - n0 : TASK_ROWS;
        const decode_linear_t* W = ws[i];
        /* one row of x, and rows this build reads as runs side by side: a task is RUN_ROWS rows of
           each quarter of W (read one after the other, the runs would break the threads' streams) */
        const int runs = M == 1 && (W->fmt < 0 ? gemv_runs()
                                               : int8_act(W) && qgemm_runs((W->fmt - GGML_DECODE_FMT) & ~GGML_ACT_INT8));
        const int64_t gap = (Ns[i] + TASK_ROWS - 1) / TASK_ROWS * RUN_ROWS;   /* a quarter of W, whole tasks */
        float* o = out + offset + n0;
        float* o_runs = out + offset + t * RUN_ROWS;    /* the runs' first outputs (out[r - t RUN_ROWS]) */
        if (W->fmt < 0) {
            if (runs)      /* as the int8 rows below */
                gemv_rows_runs(o_runs, x, (const float*)W->w, t * RUN_ROWS, RUN_ROWS, gap, Ns[i], K);
            else
                gemm_rows(o, ldo, x, M, (const float*)W->w + n0 * K, nb, K);
            continue;
        }
        if (int8_act(W)) {
            if (!qx && have_sums != QX_READY) {   /* x not quantized by the phase that wrote it: once per
                                                     thread and group */
                qgemm_prepare_x(x, M, K, sums);
                have_sums = QX_READY;
            }
            const int32_t type = (W->fmt - GGML_DECODE_FMT) & ~GGML_ACT_INT8;
            if (M == 1 && tiles_w(W)) {    /* task t: group t of each of QTILES_RUNS parts of W */
                qgemm_tiles_runs(type, out + offset, qx ? qx : sums, K, t, tasks_of(W, Ns[i], 1), Ns[i],
                                 (const uint8_t*)W->w);
            } else if (runs) {    /* task t: RUN_ROWS rows of each quarter of W, so that a thread's tasks read
                              four long runs side by side (qgemm_rows_runs) */
                qgemm_rows_runs(type, o_runs, qx ? qx : sums, K, t * RUN_ROWS, RUN_ROWS, gap, Ns[i],
                                (const uint8_t*)W->w);
            } else {
                qgemm_rows(type, o, ldo, qx ? qx : sums, M, K, n0, nb, (const uint8_t*)W->w);
            }
            continue;
        }
        for (int64_t m = 0; m < M; m++) {
            const float* xm = x + m * K;
            if (W->fmt >= GGML_DECODE_FMT) { /* ggml block types: ggml_blocks.c, no sums needed */
                ggml_gemv_rows(W->fmt - GGML_DECODE_FMT, o + m * ldo, xm, n0, nb, K, (const uint8_t*)W->w);
                continue;
            }
            if (have_sums != i || M > 1) {
                quant_x_sums(W->fmt, xm, K, W->group, sums);
                have_sums = i;
            }
            quant_gemv_rows(W->fmt, o + m * ldo, xm, sums, n0, nb, K, (const uint8_t*)W->w, W->scale,
                            W->zero, W->group);
        }
    }
}

/* out (M, ldo) = x (M, K) W^T for one weight W (N, K), in tasks as above */
static void gemm_one(float* out, int64_t ldo, const float* x, int64_t M, const decode_linear_t* W, int64_t N,
                     int64_t K, line_counter_t* next, float* sums, const void* qx) {
    gemv_tasks(out, ldo, x, M, &W, &N, 1, K, next, sums, qx);
}

/* an optional bias's i-th entry: NULL stays NULL */
static const float* bias_at(const float* b, int64_t i) { return b ? b + i : NULL; }

static void add_bias(float* y, const float* b, int64_t n) {  /* y += b, nothing when b is NULL */
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] += b[i];
}

/* x += o + b (b NULL: x += o), o read only: solo, both threads read the shared o */
static void add_residual(float* x, const float* o, const float* b, int64_t C) {
    if (b)
        for (int64_t c = 0; c < C; c++) x[c] += o[c] + b[c];
    else
        for (int64_t c = 0; c < C; c++) x[c] += o[c];
}

static void norm(float* y, const float* x, const float* w, const float* b, int64_t C, int32_t layernorm,
                 float eps) {
    float mean, rstd;
    if (layernorm) layernorm_row(y, &mean, &rstd, x, w, b, C, eps);
    else rmsnorm_row(y, &rstd, x, w, C, eps);
}

/* What every thread of a step shares: sizes, inputs, the rows' places in the cache, and the
 * scratch buffers of one layer, each with a row per token. */
typedef struct {
    int64_t M, C, H, Hkv, D, F, rep, Cq, Ckv, Nqkv;   /* rep = H / Hkv; Nqkv = Cq + 2 Ckv */
    int64_t block_size, page, max_blocks;           /* page: floats per block of a layer's cache */
    const int32_t* tables;                          /* (sequences, max_blocks) block ids */
    const int32_t *row_table, *row_pos;             /* (M) each row's sequence and position */
    int32_t layernorm;
    int32_t kv_f16;                                 /* the cache holds float16 (else float32) */
    float eps, scale;
    const float *rope_cos, *rope_sin;               /* (M, D/2) each, or NULL */
    float* x;                                 /* (M, C) the residual stream */
    float* h;                                 /* (M, C) normed input of a sub-block */
    float* qkv;                               /* (M, Nqkv) */
    float* att;                               /* (M, Cq) attention output, heads side by side */
    float* o;                                 /* (M, C) output of o or down */
    float* gu;                                /* (M, 2F) gate | up, or up */
    float* act;                               /* (M, F) */
    void* qx;                                 /* the input of the next int8 GEMM, quantized (qgemm.c) */
    barrier_t* bar;
    const int64_t* piece_first;               /* (M + 1): row m's attention pieces (ATT_PIECE) */
    float* pieces;                            /* (Hkv, pieces, rep (D + 2)) their partial results */
    atomic_int* pieces_done;                  /* (M, Hkv) pieces finished, this layer */
    int solo;                                 /* M = 1: every thread runs the row-wise phases (above) */
} step_t;

/* Where a thread's row-wise phases read and write the residual stream x, the normed input h and h
 * quantized qx: the step's shared rows, or (solo) the thread's own copy of the one row. */
typedef struct {
    float *x, *h;
    void* qx;
} rows_t;

/* A row attending over more than ATT_PIECE positions is cut into pieces of ATT_PIECE positions,
 * each a task of its own (attention_paged_part), merged by whichever thread finishes the row's last
 * piece: a decode step of one long sequence has only Hkv (row, kv head) tasks, which two threads
 * split unevenly (SmolLM2: 3 kv heads) and one thread per kv head streams its keys and values at
 * one core's bandwidth. The cut depends on the row's position alone, so a row's result does not
 * depend on the batch it is in; rows up to ATT_PIECE positions keep the one-task path. */
#define ATT_PIECE 256
static int64_t pieces_of(int64_t n) { return n > ATT_PIECE ? (n + ATT_PIECE - 1) / ATT_PIECE : 1; }

static const int32_t* table_of(const step_t* st, int64_t m) { return st->tables + st->row_table[m] * st->max_blocks; }

/* Phase 3a for row m and kv head hk: add the biases, rotate the row's rep query heads and its key
 * (RoPE), store the key and value at the row's slot of the layer's cache. */
static void store_kv_head(const step_t* st, float* const* p, const float* bq, const float* bk,
                          const float* bv, int64_t m, int64_t hk) {
    const int64_t rep = st->rep, D = st->D, pos = st->row_pos[m];
    float* row = st->qkv + m * st->Nqkv;
    float* qg = row + hk * rep * D;
    float* k = row + st->Cq + hk * D;
    float* v = row + st->Cq + st->Ckv + hk * D;
    add_bias(qg, bias_at(bq, hk * rep * D), rep * D);
    add_bias(k, bias_at(bk, hk * D), D);
    add_bias(v, bias_at(bv, hk * D), D);
    if (st->rope_cos) {
        const float *c = st->rope_cos + m * (D / 2), *s = st->rope_sin + m * (D / 2);
        for (int64_t g = 0; g < rep; g++) rope_row(qg + g * D, qg + g * D, c, s, D / 2);
        rope_row(k, k, c, s, D / 2);
    }
    const int64_t at = table_of(st, m)[pos / st->block_size] * st->page +
                       (hk * st->block_size + pos % st->block_size) * D;
    if (st->kv_f16) {
        floats_to_halves((uint16_t*)(void*)p[K_CACHE] + at, k, D);
        floats_to_halves((uint16_t*)(void*)p[V_CACHE] + at, v, D);
    } else {
        memcpy(p[K_CACHE] + at, k, sizeof(float) * D);
        memcpy(p[V_CACHE] + at, v, sizeof(float) * D);
    }
}

/* the start of kv head hk's rows in a layer's K or V pages (float32 or float16 elements) */
static const void* cache_head(const step_t* st, const float* pages, int64_t hk) {
    return (const char*)pages + hk * st->block_size * st->D * (st->kv_f16 ? 2 : 4);
}

/* Phase 3b for row m and kv head hk: attend over the row's positions 0..pos. s: (rep, pos+1). */
static void attend_kv_head(const step_t* st, float* const* p, int64_t m, int64_t hk, float* s) {
    const int64_t rep = st->rep, D = st->D;
    attention_paged_head(st->att + m * st->Cq + hk * rep * D, st->qkv + m * st->Nqkv + hk * rep * D,
                         cache_head(st, p[K_CACHE], hk), cache_head(st, p[V_CACHE], hk), st->kv_f16,
                         table_of(st, m), st->block_size, st->page,
                         rep, st->row_pos[m] + 1, D, st->scale, s);
}

/* Rows are split between the threads the same way in every row-wise phase (row m to thread
 * m % nt), so a thread that finishes one for a row may start the next for it without a barrier.
 * Solo: every thread takes the one row, into its own rows_t. */
#define EACH_ROW(m, n, st, tid, nt) for (int64_t m = (st)->solo ? 0 : tid; m < (n); m += (st)->solo ? 1 : nt)
#define MY_ROWS(m, st, tid, nt) EACH_ROW(m, (st)->M, st, tid, nt)

/* a barrier after a row-wise phase: none when solo (each thread reads only what it wrote) */
static void rows_done(const step_t* st, int nt) {
    if (!st->solo) barrier_wait(st->bar, nt);
}

/* Row m of the (M, K) input x of an int8 GEMM, columns k0..k1-1, into qx (qgemm.c's layout for M
 * rows): each phase that writes such an input quantizes the part it wrote, so no thread quantizes
 * all of it again. */
static void quantize_part(void* qx, const float* x, int64_t M, int64_t K, int64_t m, int64_t k0, int64_t k1) {
    qgemm_prepare_span(x, M, K, m, k0, k1, qx);
}

/* Phase 3b's tasks for row m and kv head hk, one row's piece of its positions (ATT_PIECE) each,
 * then att quantized for W_o when o8. */
static void attend_task(const step_t* st, float* const* p, int64_t t, int64_t n_pieces, int o8, float* s) {
    const int64_t Cq = st->Cq, span = st->rep * st->D;
    const int64_t piece = t / st->Hkv, hk = t % st->Hkv;
    int64_t m = 0;
    while (st->piece_first[m + 1] <= piece) m++;
    const int64_t first = st->piece_first[m], parts = st->piece_first[m + 1] - first;
    if (parts == 1) {
        attend_kv_head(st, p, m, hk, s);
    } else {
        const int64_t i = piece - first, n = st->row_pos[m] + 1, size = st->rep * (st->D + 2);
        const int64_t t0 = i * ATT_PIECE, t1 = t0 + ATT_PIECE < n ? t0 + ATT_PIECE : n;
        float* row_parts = st->pieces + (hk * n_pieces + first) * size;   /* the row's pieces, in order */
        float* mine = row_parts + i * size;
        attention_paged_part(mine, mine + st->rep * st->D, mine + st->rep * st->D + st->rep,
                             st->qkv + m * st->Nqkv + hk * span, cache_head(st, p[K_CACHE], hk),
                             cache_head(st, p[V_CACHE], hk), st->kv_f16, table_of(st, m), st->block_size, st->page, st->rep, t0, t1, st->D, st->scale, s);
        /* acq_rel: the last piece's thread sees every other piece's results */
        if (atomic_fetch_add_explicit(&st->pieces_done[m * st->Hkv + hk], 1, memory_order_acq_rel) != parts - 1)
            return;                                    /* not the row's last piece: another merges */
        attention_merge_parts(st->att + m * Cq + hk * span, row_parts, parts, st->rep, st->D);
    }
    if (o8) quantize_part(st->qx, st->att, st->M, Cq, m, hk * span, (hk + 1) * span);
}

/* Phases 1-5: x += attention(norm1(x)) W_o^T + b_o, then h = norm2(x). r: this thread's rows. */
static void attention_sub_block(const step_t* st, float* const* p, const decode_linear_t* lin,
                                line_counter_t* const* nx, const rows_t* r, int tid, int nt, float* s,
                                float* sums) {
    const int64_t C = st->C, Cq = st->Cq, Ckv = st->Ckv, M = st->M, span = st->rep * st->D;
    const int fused = lin[W_K].w == NULL;
    const float* bq = p[Q_B];                   /* a fused qkv.b holds all three */
    const float* bk = fused ? bias_at(bq, Cq) : p[K_B];
    const float* bv = fused ? bias_at(bq, Cq + Ckv) : p[V_B];
    const int q8 = int8_act(&lin[W_Q]) || int8_act(&lin[W_K]) || int8_act(&lin[W_V]);
    const int o8 = int8_act(&lin[W_O]) && span % 32 == 0, up8 = int8_act(&lin[W_GATE]) || int8_act(&lin[W_UP]);
    MY_ROWS(m, st, tid, nt) {
        norm(r->h + m * C, r->x + m * C, p[LN1_W], p[LN1_B], C, st->layernorm, st->eps);
        if (q8) quantize_part(r->qx, r->h, M, C, m, 0, C);
    }
    rows_done(st, nt);
    {   /* 2: q, k, v */
        const decode_linear_t* ws[3] = {&lin[W_Q], &lin[W_K], &lin[W_V]};
        const int64_t Ns[3] = {fused ? st->Nqkv : Cq, Ckv, Ckv};
        gemv_tasks(st->qkv, st->Nqkv, r->h, M, ws, Ns, fused ? 1 : 3, C, nx[PH_QKV], sums, q8 ? r->qx : NULL);
    }
    barrier_wait(st->bar, nt);
    const int64_t n_pieces = st->piece_first[M];
    if (st->solo && n_pieces == M) {       /* one row, one piece: 3a and 3b of a kv head in one task */
        /* each thread takes the heads of its own segment first (next_task): one counter per thread,
           not one line that moved between the cores at every head (1-2% of a 4-bit token, A/B) */
        const int segs = segments(nt);
        int seg = tid % segs, left = segs;
        for (int64_t t; (t = next_task(nx[PH_HEADS], st->Hkv, segs, &seg, &left)) >= 0;) {
            store_kv_head(st, p, bq, bk, bv, 0, t);
            attend_task(st, p, t, n_pieces, o8, s);
        }
    } else {
        for (int64_t t; (t = atomic_fetch_add_explicit(&nx[PH_STORE]->n, 1, memory_order_relaxed)) < M * st->Hkv;) {
            store_kv_head(st, p, bq, bk, bv, t / st->Hkv, t % st->Hkv);  /* 3a: every row's keys first */
            atomic_store_explicit(&st->pieces_done[t], 0, memory_order_relaxed);   /* for 3b, past the barrier */
        }
        barrier_wait(st->bar, nt);
        for (int64_t t; (t = atomic_fetch_add_explicit(&nx[PH_HEADS]->n, 1, memory_order_relaxed)) < n_pieces * st->Hkv;)
            attend_task(st, p, t, n_pieces, o8, s);     /* 3b: one (piece of a row, kv head) per task */
    }
    barrier_wait(st->bar, nt);
    gemm_one(st->o, C, st->att, M, &lin[W_O], C, Cq, nx[PH_O], sums, o8 ? st->qx : NULL);   /* 4: o */
    barrier_wait(st->bar, nt);
    MY_ROWS(m, st, tid, nt) {  /* 5 (solo: each thread adds the bias into its own copy of x) */
        add_residual(r->x + m * C, st->o + m * C, p[O_B], C);
        norm(r->h + m * C, r->x + m * C, p[LN2_W], p[LN2_B], C, st->layernorm, st->eps);
        if (up8) quantize_part(r->qx, r->h, M, C, m, 0, C);
    }
    rows_done(st, nt);
}

/* Phases 6-8: x += act(h W_gate^T, h W_up^T) W_down^T + b_down. r: this thread's rows. */
static void mlp_sub_block(const step_t* st, float* const* p, const decode_linear_t* lin, line_counter_t* const* nx,
                          const rows_t* r, int tid, int nt, float* sums) {
    const int64_t C = st->C, F = st->F, M = st->M;
    const int swiglu = lin[W_GATE].w != NULL;
    const int64_t ldg = swiglu ? 2 * F : F;
    const int up8 = int8_act(&lin[W_GATE]) || int8_act(&lin[W_UP]), down8 = int8_act(&lin[W_DOWN]);
    {   /* 6: gate and up, side by side in each row of gu */
        const decode_linear_t* ws[2] = {swiglu ? &lin[W_GATE] : &lin[W_UP], &lin[W_UP]};
        const int64_t Ns[2] = {F, F};
        gemv_tasks(st->gu, ldg, r->h, M, ws, Ns, swiglu ? 2 : 1, C, nx[PH_UP], sums, up8 ? r->qx : NULL);
    }
    barrier_wait(st->bar, nt);
    {   /* 7: this thread's share of the F channels of every row, a multiple of 32 (whole blocks of
           the int8 quantization of act, which it does for its share too) */
        const int64_t share = ((F + nt - 1) / nt + 31) / 32 * 32;
        const int64_t f0 = tid * share < F ? tid * share : F;
        const int64_t f1 = f0 + share < F ? f0 + share : F;
        for (int64_t m = 0; m < M; m++) {
            float *gu = st->gu + m * ldg, *act = st->act + m * F;
            float* up = swiglu ? gu + F : gu;
            add_bias(up + f0, bias_at(p[UP_B], f0), f1 - f0);
            if (swiglu) {
                add_bias(gu + f0, bias_at(p[GATE_B], f0), f1 - f0);
                swiglu_span(act + f0, gu + f0, up + f0, f1 - f0);
            } else {
                gelu_span(act + f0, up + f0, f1 - f0);
            }
            if (down8) quantize_part(st->qx, st->act, M, F, m, f0, f1);
        }
    }
    barrier_wait(st->bar, nt);
    gemm_one(st->o, C, st->act, M, &lin[W_DOWN], C, F, nx[PH_DOWN], sums, down8 ? st->qx : NULL);  /* 8 */
    barrier_wait(st->bar, nt);
    MY_ROWS(m, st, tid, nt) {  /* the next layer's step 1 takes the same rows: no barrier between */
        add_residual(r->x + m * C, st->o + m * C, p[DOWN_B], C);
    }
}

/* The head for the rows listed in head_rows: h_j = norm_f(x[head_rows[j]]), then logits = h W^T. */
static void head_phase(const step_t* st, const rows_t* r, const float* lnf_w, const float* lnf_b,
                       const decode_linear_t* head, int64_t V, const int32_t* head_rows, int64_t n_head,
                       float* logits, line_counter_t* next, int tid, int nt, float* sums) {
    const int64_t C = st->C;
    const int h8 = int8_act(head);
    EACH_ROW(j, n_head, st, tid, nt) {
        norm(r->h + j * C, r->x + head_rows[j] * C, lnf_w, lnf_b, C, st->layernorm, st->eps);
        if (h8) quantize_part(r->qx, r->h, n_head, C, j, 0, C);
    }
    rows_done(st, nt);
    gemm_one(logits, V, r->h, n_head, head, V, C, next, sums, h8 ? r->qx : NULL);
}

/* A thread entering the step notes its core; thread 0 then starts at once, and the others, once
 * every core is known, move off a core another thread of the team is on (leave_shared_core). */
static void join_team(int tid, int nt, int* cpus, atomic_int* known) {
#if defined(__linux__)
    cpus[tid] = sched_getcpu();
#else
    cpus[tid] = -1;
#endif
    atomic_fetch_add(known, 1);
    if (tid == 0) return;
    for (int spins = 0; atomic_load(known) < nt; spins++)
        if (spins < SPIN_LIMIT) CPU_RELAX();
        else sched_yield();
    leave_shared_core(tid, nt, cpus);
}

/* Every row index, position and block id the step will follow is in range: 0, or -2. */
static int32_t check_rows(const int32_t* tables, int64_t n_tables, int64_t max_blocks, int64_t num_blocks,
                          int64_t block_size, const int32_t* row_table, const int32_t* row_pos, int64_t M,
                          const int32_t* head_rows, int64_t n_head) {
    if (M < 1 || n_tables < 1 || max_blocks < 1 || num_blocks < 1 || block_size < 1 || n_head < 0 || n_head > M)
        return -2;
    for (int64_t m = 0; m < M; m++) {
        if (row_table[m] < 0 || row_table[m] >= n_tables || row_pos[m] < 0 || row_pos[m] >= max_blocks * block_size)
            return -2;
        for (int64_t b = 0; b <= row_pos[m] / block_size; b++) {
            const int32_t id = tables[row_table[m] * max_blocks + b];
            if (id < 0 || id >= num_blocks) return -2;
        }
    }
    for (int64_t j = 0; j < n_head; j++)
        if (head_rows[j] < 0 || head_rows[j] >= M) return -2;
    return 0;
}

/* The model as paged_step takes it: the layers' vectors and weights, the final norm and the head. */
typedef struct {
    float* const* vecs;
    const decode_linear_t* linears;
    int64_t L;
    const float *lnf_w, *lnf_b;
    const decode_linear_t* head;
    int64_t V;
} model_t;

/* What a step allocates, all up front (running out of memory changes nothing), and the team's
 * places in it. Sized for rows attending over up to n_max positions in n_pieces pieces. */
typedef struct {
    float* buf;
    float *per_thread_buf, *own_buf;          /* (threads, per_thread), (threads, own) */
    int64_t scores, per_thread, own, n_counters, nseg;   /* scores: floats of a thread's scores */
    line_counter_t* next;                     /* the task counters of every phase */
    int* cpus;                                /* the core of each thread */
    atomic_int cpus_known;                    /* threads that wrote theirs */
    int nthreads;
} team_t;

static void team_free(step_t* st, team_t* tm) {
    free(tm->buf), free(tm->next), free(st->bar), free(tm->cpus), free((void*)st->piece_first),
        free(st->pieces_done);
}

/* Allocate the step's buffers and counters into st and tm (st's sizes set): 0, or -1 when out of
 * memory (then nothing is held). */
static int team_alloc(step_t* st, team_t* tm, int64_t L, int64_t n_max, int64_t n_pieces) {
    const int64_t M = st->M, C = st->C, Cq = st->Cq, F = st->F, rep = st->rep;
    /* spinning threads need a core each: never more of them than the machine has */
    tm->nthreads = omp_get_max_threads() < omp_get_num_procs() ? omp_get_max_threads() : omp_get_num_procs();
    const int64_t K_max = C > Cq ? (C > F ? C : F) : (Cq > F ? Cq : F);
    /* scores, then sums of x for quant.c or the M rows of x quantized for qgemm.c */
    const int64_t qx_floats = (qgemm_scratch_bytes(M, K_max) + 3) / 4 + 1;
    tm->scores = rep * (n_max + 2);
    tm->per_thread = tm->scores + (K_max / 32 + 1 > qx_floats ? K_max / 32 + 1 : qx_floats);
    tm->own = st->solo ? 2 * C + qx_floats : 0;
    const int64_t rows = M * (C + st->Nqkv + Cq + C + 2 * F + F);
    const int64_t piece_floats = n_pieces > M ? st->Hkv * n_pieces * rep * (st->D + 2) : 0;
    tm->nseg = segments(tm->nthreads);
    tm->n_counters = (L * N_PHASES + 1) * tm->nseg;     /* + the head's */
    tm->buf = malloc(sizeof(float) * (size_t)(rows + (int64_t)tm->nthreads * (tm->per_thread + tm->own) +
                                              qx_floats + piece_floats));
    st->pieces_done = malloc(sizeof(atomic_int) * (size_t)(M * st->Hkv));
    st->piece_first = malloc(sizeof(int64_t) * (size_t)(M + 1));
    tm->next = aligned_alloc(64, sizeof(line_counter_t) * (size_t)tm->n_counters);
    st->bar = aligned_alloc(64, sizeof(barrier_t));
    tm->cpus = malloc(sizeof(int) * (size_t)tm->nthreads);
    if (!tm->buf || !tm->next || !st->bar || !tm->cpus || !st->piece_first || !st->pieces_done) {
        team_free(st, tm);
        return -1;
    }
    for (int64_t i = 0; i < tm->n_counters; i++) atomic_init(&tm->next[i].n, 0);
    atomic_init(&st->bar->arrived, 0);
    atomic_init(&st->bar->round, 0);
    atomic_init(&st->bar->sleepers, 0);
    atomic_init(&tm->cpus_known, 0);
    st->h = tm->buf;
    st->qkv = st->h + M * C;
    st->att = st->qkv + M * st->Nqkv;
    st->o = st->att + M * Cq;
    st->gu = st->o + M * C;
    st->act = st->gu + M * 2 * F;
    tm->per_thread_buf = st->act + M * F;
    st->qx = tm->per_thread_buf + (int64_t)tm->nthreads * tm->per_thread;
    st->pieces = (float*)st->qx + qx_floats;
    tm->own_buf = st->pieces + piece_floats;
    return 0;
}

/* each row's first attention piece (ATT_PIECE), from the rows' positions */
static void set_pieces(step_t* st) {
    int64_t* first = (int64_t*)st->piece_first;
    first[0] = 0;
    for (int64_t m = 0; m < st->M; m++) first[m + 1] = first[m] + pieces_of(st->row_pos[m] + 1);
}

/* The step's sizes and inputs (buffers: team_alloc). */
static step_t step_of(float* x, int64_t M, int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t F,
                      int64_t block_size, int64_t max_blocks, const int32_t* tables, const int32_t* row_table,
                      const int32_t* row_pos, int32_t layernorm, int32_t kv_f16, float eps,
                      const float* rope_cos, const float* rope_sin) {
    const int64_t rep = H / Hkv, Cq = H * D, Ckv = Hkv * D;
    step_t st = {M, C, H, Hkv, D, F, rep, Cq, Ckv, Cq + 2 * Ckv, block_size, Hkv * block_size * D, max_blocks,
                 tables, row_table, row_pos, layernorm, kv_f16 != 0, eps, 1.0f / sqrtf((float)D), rope_cos, rope_sin, x,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, M == 1};
    return st;   /* M = 1: solo, each thread its own x, h, qx (rows_t) */
}

/* A thread's rows (solo: its own copy of the row, x copied in), its scores s (rep, n_max) and its
 * scratch sums (K_max / 32, or qgemm's scratch). */
static rows_t thread_rows(const step_t* st, const team_t* tm, int tid, float** s, float** sums) {
    *s = tm->per_thread_buf + (int64_t)tid * tm->per_thread;
    *sums = *s + tm->scores;
    if (!st->solo) return (rows_t){st->x, st->h, st->qx};
    float* mine = tm->own_buf + (int64_t)tid * tm->own;
    memcpy(mine, st->x, sizeof(float) * (size_t)st->C);
    return (rows_t){mine, mine + st->C, mine + 2 * st->C};
}

/* One thread's part of a step: every block, then the head on the rows head_rows when logits are
 * asked for. */
static void run_blocks(const step_t* st, const team_t* tm, const model_t* md, const rows_t* r, int tid, int nt,
                       float* s, float* sums, const int32_t* head_rows, int64_t n_head, float* logits) {
    for (int64_t l = 0; l < md->L; l++) {
        line_counter_t* nx[N_PHASES];
        for (int ph = 0; ph < N_PHASES; ph++) nx[ph] = tm->next + (l * N_PHASES + ph) * tm->nseg;
        const decode_linear_t* lin = md->linears + l * DECODE_LINEARS;
        attention_sub_block(st, md->vecs + l * DECODE_VECS, lin, nx, r, tid, nt, s, sums);
        mlp_sub_block(st, md->vecs + l * DECODE_VECS, lin, nx, r, tid, nt, sums);
    }
    if (logits && n_head > 0) {     /* the head: final norms, then its GEMM in tasks */
        if (!st->solo) barrier_wait(st->bar, nt);   /* every row's last residual add is done (solo: each
                                                       thread's own copy, see MY_ROWS) */
        head_phase(st, r, md->lnf_w, md->lnf_b, md->head, md->V, head_rows, n_head, logits,
                   tm->next + md->L * N_PHASES * tm->nseg, tid, nt, sums);
    }
}

int32_t paged_step(float* x, int64_t M, float* const* vecs, const decode_linear_t* linears, int64_t L,
                   int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t F, int64_t num_blocks, int64_t block_size,
                   const int32_t* tables, int64_t n_tables, int64_t max_blocks, const int32_t* row_table,
                   const int32_t* row_pos, int32_t layernorm, int32_t kv_f16, float eps, const float* rope_cos,
                   const float* rope_sin, const float* lnf_w, const float* lnf_b, const decode_linear_t* head,
                   int64_t V, const int32_t* head_rows, int64_t n_head, float* logits) {
    if (H < 1 || Hkv < 1 || H % Hkv || L < 1 || check_rows(tables, n_tables, max_blocks, num_blocks, block_size,
                                                           row_table, row_pos, M, head_rows, n_head))
        return -2;
    int64_t n_max = 1, n_pieces = 0;          /* the longest attention span of a row; the pieces */
    for (int64_t m = 0; m < M; m++) {
        n_max = row_pos[m] + 1 > n_max ? row_pos[m] + 1 : n_max;
        n_pieces += pieces_of(row_pos[m] + 1);
    }
    step_t st = step_of(x, M, C, H, Hkv, D, F, block_size, max_blocks, tables, row_table, row_pos, layernorm, kv_f16, eps,
                        rope_cos, rope_sin);
    team_t tm;
    if (team_alloc(&st, &tm, L, n_max, n_pieces)) return -1;
    set_pieces(&st);
    const model_t md = {vecs, linears, L, lnf_w, lnf_b, head, V};
    #pragma omp parallel num_threads(tm.nthreads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        join_team(tid, nt, tm.cpus, &tm.cpus_known);
        float *s, *sums;
        const rows_t r = thread_rows(&st, &tm, tid, &s, &sums);
        run_blocks(&st, &tm, &md, &r, tid, nt, s, sums, head_rows, n_head, logits);
        if (st.solo && tid == 0) memcpy(x, r.x, sizeof(float) * (size_t)C);   /* every copy holds the same */
    }
    team_free(&st, &tm);
    return 0;
}

/* The first of the largest of z[lo..hi-1] (np.argmax's choice) into *at and its value into *top, or
 * *at = -1 when one is NaN: the largest value in vector registers, then the first index holding it.
 * At the end of a decode step each thread takes one contiguous share of the logits (which rows it
 * wrote depends on the head's task layout: with row tiles a task spans six parts of W, so about half
 * a share is the other core's): thread 0 alone, scanning all 32000, took ~18 us while the others
 * waited. */
static void argmax_span(const float* z, int64_t lo, int64_t hi, int64_t* at, float* top) {
    float m1 = z[lo];
    int nan = 0;
    int64_t i = lo;
#if defined(__AVX512F__)
    __m512 m = _mm512_set1_ps(z[lo]);
    __mmask16 bad = 0;
    for (; i + 16 <= hi; i += 16) {
        const __m512 v = _mm512_loadu_ps(z + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, v);
    }
    m1 = _mm512_reduce_max_ps(m);
    nan = bad != 0;
#elif defined(__AVX__)
    __m256 m = _mm256_set1_ps(z[lo]), bad = _mm256_setzero_ps();
    for (; i + 8 <= hi; i += 8) {
        const __m256 v = _mm256_loadu_ps(z + i);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m = _mm256_max_ps(m, v);
    }
    _Alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    for (int j = 0; j < 8; j++) m1 = lanes[j] > m1 ? lanes[j] : m1;
    nan = _mm256_movemask_ps(bad) != 0;
#endif
    for (; i < hi; i++) {
        nan |= z[i] != z[i];
        m1 = z[i] > m1 ? z[i] : m1;
    }
    *top = m1;
    if (nan) {
        *at = -1;
        return;
    }
    for (i = lo; z[i] != m1; i++) {}      /* -0 and +0 are equal here, as to np.argmax */
    *at = i;
}

/* A thread's share of the logits' argmax, on a cache line of its own. */
typedef struct {
    _Alignas(64) float top;
    int64_t at;                           /* -1: a NaN in the share; -2: an empty share */
} best_t;

/* The logits' argmax from the threads' shares (in order: ties go to the first), or -1 for NaN. */
static int32_t argmax_of(const best_t* best, int nt) {
    int64_t at = -2;
    float top = 0.0f;
    for (int t = 0; t < nt; t++) {
        if (best[t].at == -1) return -1;
        if (best[t].at >= 0 && (at < 0 || best[t].top > top)) at = best[t].at, top = best[t].top;
    }
    return (int32_t)at;
}

/* Thread 0, between steps of decode_run: x = the token's embedding (plus its position's), the RoPE
 * rows and attention pieces of the step's position (*st->row_pos), every task counter back to 0. */
static void embed_step(step_t* st, team_t* tm, const float* embed, const float* pos_embed, const float* rope_cos,
                       const float* rope_sin, int32_t token) {
    const int64_t C = st->C, at = st->row_pos[0], half = st->D / 2;
    for (int64_t c = 0; c < C; c++)
        st->x[c] = pos_embed ? embed[token * C + c] + pos_embed[at * C + c] : embed[token * C + c];
    if (rope_cos) st->rope_cos = rope_cos + at * half, st->rope_sin = rope_sin + at * half;
    set_pieces(st);
    for (int64_t k = 0; k < tm->n_counters; k++) atomic_store_explicit(&tm->next[k].n, 0, memory_order_relaxed);
}

int32_t decode_run(const float* embed, int64_t n_vocab, const float* pos_embed, int64_t n_pos, float* const* vecs,
                   const decode_linear_t* linears, int64_t L, int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t F,
                   int64_t Smax, int32_t layernorm, int32_t kv_f16, float eps, const float* rope_cos,
                   const float* rope_sin,
                   const float* lnf_w, const float* lnf_b, const decode_linear_t* head, int64_t V, int32_t token,
                   int64_t pos, int64_t n, decode_next_fn next, void* ctx, float* logits, int32_t* tokens,
                   int64_t* done) {
    *done = 0;
    if (H < 1 || Hkv < 1 || H % Hkv || L < 1 || C < 1 || V < 1 || n_vocab < 1 || token < 0 || token >= n_vocab ||
        pos < 0 || n < 1 || Smax < 1 || pos > Smax - n || (pos_embed && pos > n_pos - n))
        return -2;
    const int32_t zero = 0;
    int32_t at = (int32_t)pos, status = 0;
    float* x = malloc(sizeof(float) * (size_t)C);
    if (!x) return -1;
    step_t st = step_of(x, 1, C, H, Hkv, D, F, Smax, 1, &zero, &zero, &at, layernorm, kv_f16, eps, NULL, NULL);
    team_t tm;
    if (team_alloc(&st, &tm, L, pos + n, pieces_of(pos + n))) {
        free(x);
        return -1;
    }
    const model_t md = {vecs, linears, L, lnf_w, lnf_b, head, V};
    best_t* best = aligned_alloc(64, sizeof(best_t) * (size_t)tm.nthreads);
    if (!best) {
        team_free(&st, &tm);
        free(x);
        return -1;
    }
    int stop = 0;
    embed_step(&st, &tm, embed, pos_embed, rope_cos, rope_sin, token);
    #pragma omp parallel num_threads(tm.nthreads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        join_team(tid, nt, tm.cpus, &tm.cpus_known);
        float *s, *sums;
        for (int64_t i = 0; i < n; i++) {
            const rows_t r = thread_rows(&st, &tm, tid, &s, &sums);
            run_blocks(&st, &tm, &md, &r, tid, nt, s, sums, &zero, 1, logits);
            barrier_wait(st.bar, nt);             /* every logit is written, every task counter read */
            const int64_t share = (V + nt - 1) / nt, lo = tid * share < V ? tid * share : V;
            best[tid].at = -2;
            if (lo < V) argmax_span(logits, lo, lo + share < V ? lo + share : V, &best[tid].at, &best[tid].top);
            barrier_wait(st.bar, nt);             /* every share's argmax is known */
            if (tid == 0) {
                const int32_t greedy = argmax_of(best, nt);
                const int32_t t = next ? next(ctx, logits, i, greedy) : greedy;
                *done = i + 1;
                if (t < 0 || t >= n_vocab) {      /* -1 from next: the end asked for */
                    stop = 1;
                    status = t == -1 ? (next ? 0 : -3) : -4;
                } else {
                    tokens[i] = t;
                    at++;
                    if (i + 1 < n) embed_step(&st, &tm, embed, pos_embed, rope_cos, rope_sin, t);
                }
            }
            barrier_wait(st.bar, nt);             /* the next step's x, position and counters are set */
            if (stop) break;
        }
    }
    team_free(&st, &tm);
    free(x), free(best);
    return status;
}
