/* csrc/decode.c -- one decode step through every block, in one parallel region. See decode.h.
 * Reference: minillm/kernels/reference.py:decode_step.
 *
 * At decode a block is about ten small operations. Run from Python, each is a wrapper call, and
 * each GEMV or attention call also wakes the sleeping second OpenMP thread (OMP_WAIT_POLICY is
 * PASSIVE, see kernels/native.py): for a 12-layer model that is ~300 calls and ~70 wake-ups per
 * token, a few milliseconds next to ~25 ms of weight streaming. Here the threads wake once per
 * token and meet at barriers between the phases of each block:
 *
 *   1. thread 0: h = norm1(x)
 *   2. all: qkv = h W_qkv^T              tasks of TASK_ROWS rows of the q, k, v weights
 *   3. all: per kv head, add the biases, rotate q and k (RoPE), store k and v at slot pos of
 *      the cache, attend over slots 0..pos         one task per kv head
 *   4. all: o = att W_o^T                tasks of rows
 *   5. thread 0: x += o + b_o;  h = norm2(x)
 *   6. all: gate/up = h W^T              tasks of rows
 *   7. all: act = swiglu(gate, up) or gelu(up), each thread its share of the F channels
 *   8. all: d = act W_down^T             tasks of rows;   then thread 0: x += d + b_down
 *
 * and, when logits are asked for, the head: thread 0 h = norm_f(x), then all: logits = h W_head^T.
 * Before the first phase, a thread that finds itself on a core another thread of the team is on
 * moves to a free one (leave_shared_core).
 *
 * Every phase calls the same serial code as the per-operation kernels (parts.inc), in the same
 * order of float operations, so a step equals the Python path's result; a weight may be float32
 * or quantized (the fused dequant-GEMV rows of quant.c). Tasks are handed out through an atomic
 * counter per phase: a thread that loses its core for a moment on a shared machine leaves its tasks
 * to the other instead of holding up the barrier.
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

#define TASK_ROWS 32      /* rows of a weight per task: 96 KB at K = 768 */
#define SPIN_LIMIT 2000   /* pauses (~50 us) before a waiting thread goes to sleep */
enum { LN1_W, LN1_B, Q_B, K_B, V_B, O_B, LN2_W, LN2_B, GATE_B, UP_B, DOWN_B, K_CACHE, V_CACHE };
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN };  /* the linears of a layer */
enum { PH_QKV, PH_HEADS, PH_O, PH_UP, PH_DOWN, N_PHASES };  /* phases that hand out tasks */

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

/* out = x W_i^T for the weights of a group, their outputs side by side in out: tasks of TASK_ROWS
 * rows taken from *next until none are left. A quantized W needs sums of x per block (quant.c), or
 * x quantized to int8 (qgemm.c, ggml blocks with GGML_ACT_INT8, the same for every such W of the
 * group); each thread computes them, into its own buffer sums, the first time it needs them. */
#define QX_READY (-2)
static void gemv_tasks(float* out, const float* x, const decode_linear_t* const* ws, const int64_t* Ns,
                       int count, int64_t K, atomic_long* next, float* sums) {
    int64_t ntasks = 0;
    for (int i = 0; i < count; i++) ntasks += (Ns[i] + TASK_ROWS - 1) / TASK_ROWS;
    int have_sums = -1;                       /* the weight whose sums are in `sums` */
    for (int64_t t; (t = atomic_fetch_add_explicit(next, 1, memory_order_relaxed)) < ntasks;) {
        int i = 0;
        int64_t offset = 0;                   /* task t is task t' of weight i */
        while (t >= (Ns[i] + TASK_ROWS - 1) / TASK_ROWS) {
            t -= (Ns[i] + TASK_ROWS - 1) / TASK_ROWS;
            offset += Ns[i];
            i++;
        }
        const int64_t n0 = t * TASK_ROWS, nb = Ns[i] - n0 < TASK_ROWS ? Ns[i] - n0 : TASK_ROWS;
        const decode_linear_t* W = ws[i];
        if (W->fmt < 0) {
            gemv_rows(out + offset + n0, x, (const float*)W->w + n0 * K, nb, K);
            continue;
        }
        if (W->fmt >= GGML_DECODE_FMT && ((W->fmt - GGML_DECODE_FMT) & GGML_ACT_INT8)) {
            if (have_sums != QX_READY) {      /* int8 activations: x quantized once per thread and group */
                qgemm_prepare_x(x, 1, K, sums);
                have_sums = QX_READY;
            }
            qgemm_rows((W->fmt - GGML_DECODE_FMT) & ~GGML_ACT_INT8, out + offset + n0, 1, sums, 1, K, n0, nb,
                       (const uint8_t*)W->w);
            continue;
        }
        if (W->fmt >= GGML_DECODE_FMT) {     /* ggml block types: ggml_blocks.c, no sums needed */
            ggml_gemv_rows(W->fmt - GGML_DECODE_FMT, out + offset + n0, x, n0, nb, K, (const uint8_t*)W->w);
            continue;
        }
        if (have_sums != i) {
            quant_x_sums(W->fmt, x, K, W->group, sums);
            have_sums = i;
        }
        quant_gemv_rows(W->fmt, out + offset + n0, x, sums, n0, nb, K, (const uint8_t*)W->w, W->scale,
                        W->zero, W->group);
    }
}

/* out = x W^T for one weight W (N, K), in tasks as above */
static void gemv_one(float* out, const float* x, const decode_linear_t* W, int64_t N, int64_t K,
                     atomic_long* next, float* sums) {
    gemv_tasks(out, x, &W, &N, 1, K, next, sums);
}

/* an optional bias's i-th entry: NULL stays NULL */
static const float* bias_at(const float* b, int64_t i) { return b ? b + i : NULL; }

static void add_bias(float* y, const float* b, int64_t n) {  /* y += b, nothing when b is NULL */
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] += b[i];
}

static void norm(float* y, const float* x, const float* w, const float* b, int64_t C, int32_t layernorm,
                 float eps) {
    float mean, rstd;
    if (layernorm) layernorm_row(y, &mean, &rstd, x, w, b, C, eps);
    else rmsnorm_row(y, &rstd, x, w, C, eps);
}

/* What every thread of a step shares: sizes, inputs, and the scratch buffers of one layer. */
typedef struct {
    int64_t C, H, Hkv, D, F, Smax, pos, rep, Cq, Ckv;  /* rep = H / Hkv query heads per kv head */
    int32_t layernorm;
    float eps, scale;
    const float *rope_cos, *rope_sin;
    float* x;                                 /* (C) the residual stream */
    float* h;                                 /* (C) normed input of a sub-block */
    float* qkv;                               /* (Cq + 2 Ckv) */
    float* att;                               /* (Cq) attention output, heads side by side */
    float* o;                                 /* (C) output of o or down */
    float* gu;                                /* (2F) gate | up, or up */
    float* act;                               /* (F) */
    barrier_t* bar;
} step_t;

/* Phase 3 for one kv head hk: add the biases, rotate its rep query heads and its key (RoPE), store
 * the key and value at slot pos of the layer's cache, attend over slots 0..pos. s: (rep, pos+1). */
static void attend_kv_head(const step_t* st, float* const* p, const float* bq, const float* bk,
                           const float* bv, int64_t hk, float* s) {
    const int64_t rep = st->rep, D = st->D;
    float* qg = st->qkv + hk * rep * D;
    float* k = st->qkv + st->Cq + hk * D;
    float* v = st->qkv + st->Cq + st->Ckv + hk * D;
    add_bias(qg, bias_at(bq, hk * rep * D), rep * D);
    add_bias(k, bias_at(bk, hk * D), D);
    add_bias(v, bias_at(bv, hk * D), D);
    if (st->rope_cos) {
        for (int64_t g = 0; g < rep; g++) rope_row(qg + g * D, qg + g * D, st->rope_cos, st->rope_sin, D / 2);
        rope_row(k, k, st->rope_cos, st->rope_sin, D / 2);
    }
    float* kh = p[K_CACHE] + hk * st->Smax * D;
    float* vh = p[V_CACHE] + hk * st->Smax * D;
    memcpy(kh + st->pos * D, k, sizeof(float) * D);
    memcpy(vh + st->pos * D, v, sizeof(float) * D);
    attention_decode_head(st->att + hk * rep * D, qg, kh, vh, rep, st->pos + 1, D, st->scale, s);
}

/* Phases 1-5: x += attention(norm1(x)) W_o^T + b_o, then h = norm2(x). */
static void attention_sub_block(const step_t* st, float* const* p, const decode_linear_t* lin,
                                atomic_long* nx, int tid, int nt, float* s, float* sums) {
    const int64_t C = st->C, Cq = st->Cq, Ckv = st->Ckv;
    const int fused = lin[W_K].w == NULL;
    const float* bq = p[Q_B];                   /* a fused qkv.b holds all three */
    const float* bk = fused ? bias_at(bq, Cq) : p[K_B];
    const float* bv = fused ? bias_at(bq, Cq + Ckv) : p[V_B];
    if (tid == 0) norm(st->h, st->x, p[LN1_W], p[LN1_B], C, st->layernorm, st->eps);
    barrier_wait(st->bar, nt);
    {   /* 2: q, k, v */
        const decode_linear_t* ws[3] = {&lin[W_Q], &lin[W_K], &lin[W_V]};
        const int64_t Ns[3] = {fused ? Cq + 2 * Ckv : Cq, Ckv, Ckv};
        gemv_tasks(st->qkv, st->h, ws, Ns, fused ? 1 : 3, C, &nx[PH_QKV], sums);
    }
    barrier_wait(st->bar, nt);
    for (int64_t hk; (hk = atomic_fetch_add_explicit(&nx[PH_HEADS], 1, memory_order_relaxed)) < st->Hkv;)
        attend_kv_head(st, p, bq, bk, bv, hk, s);                     /* 3: one kv head per task */
    barrier_wait(st->bar, nt);
    gemv_one(st->o, st->att, &lin[W_O], C, Cq, &nx[PH_O], sums);      /* 4: o */
    barrier_wait(st->bar, nt);
    if (tid == 0) {  /* 5 */
        add_bias(st->o, p[O_B], C);
        for (int64_t c = 0; c < C; c++) st->x[c] += st->o[c];
        norm(st->h, st->x, p[LN2_W], p[LN2_B], C, st->layernorm, st->eps);
    }
    barrier_wait(st->bar, nt);
}

/* Phases 6-8: x += act(h W_gate^T, h W_up^T) W_down^T + b_down. */
static void mlp_sub_block(const step_t* st, float* const* p, const decode_linear_t* lin, atomic_long* nx,
                          int tid, int nt, float* sums) {
    const int64_t C = st->C, F = st->F;
    const int swiglu = lin[W_GATE].w != NULL;
    float* gu = st->gu;
    {   /* 6: gate and up, side by side in gu */
        const decode_linear_t* ws[2] = {swiglu ? &lin[W_GATE] : &lin[W_UP], &lin[W_UP]};
        const int64_t Ns[2] = {F, F};
        gemv_tasks(gu, st->h, ws, Ns, swiglu ? 2 : 1, C, &nx[PH_UP], sums);
    }
    barrier_wait(st->bar, nt);
    {   /* 7: this thread's share of the F channels, a multiple of 8 */
        const int64_t share = ((F + nt - 1) / nt + 7) / 8 * 8;
        const int64_t f0 = tid * share < F ? tid * share : F;
        const int64_t f1 = f0 + share < F ? f0 + share : F;
        float* up = swiglu ? gu + F : gu;
        add_bias(up + f0, bias_at(p[UP_B], f0), f1 - f0);
        if (swiglu) {
            add_bias(gu + f0, bias_at(p[GATE_B], f0), f1 - f0);
            swiglu_span(st->act + f0, gu + f0, up + f0, f1 - f0);
        } else {
            gelu_span(st->act + f0, up + f0, f1 - f0);
        }
    }
    barrier_wait(st->bar, nt);
    gemv_one(st->o, st->act, &lin[W_DOWN], C, F, &nx[PH_DOWN], sums);  /* 8: down */
    barrier_wait(st->bar, nt);
    if (tid == 0) {  /* the next layer's step 1 is thread 0's too: no barrier between */
        add_bias(st->o, p[DOWN_B], C);
        for (int64_t c = 0; c < C; c++) st->x[c] += st->o[c];
    }
}

int32_t decode_step(float* x, float* const* vecs, const decode_linear_t* linears, int64_t L, int64_t C,
                    int64_t H, int64_t Hkv, int64_t D, int64_t F, int64_t Smax, int64_t pos,
                    int32_t layernorm, float eps, const float* rope_cos, const float* rope_sin,
                    const float* lnf_w, const float* lnf_b, const decode_linear_t* head, int64_t V,
                    float* logits) {
    const int64_t rep = H / Hkv, Cq = H * D, Ckv = Hkv * D, n = pos + 1;
    /* spinning threads need a core each: never more of them than the machine has */
    const int nthreads_max = omp_get_max_threads() < omp_get_num_procs() ? omp_get_max_threads()
                                                                         : omp_get_num_procs();
    /* every buffer up front, so that running out of memory changes nothing */
    const int64_t K_max = C > Cq ? (C > F ? C : F) : (Cq > F ? Cq : F);
    /* scores, then sums of x for quant.c or x quantized for qgemm.c */
    const int64_t qx_floats = (qgemm_scratch_bytes(1, K_max) + 3) / 4 + 1;
    const int64_t per_thread = rep * n + (K_max / 32 + 1 > qx_floats ? K_max / 32 + 1 : qx_floats);
    const int64_t scratch = C + (Cq + 2 * Ckv) + Cq + C + 2 * F + F + (int64_t)nthreads_max * per_thread;
    float* buf = malloc(sizeof(float) * scratch);
    atomic_long* next = calloc((size_t)(L * N_PHASES + 1), sizeof(atomic_long));  /* + the head's */
    barrier_t* bar = aligned_alloc(64, sizeof(barrier_t));
    int* cpus = malloc(sizeof(int) * (size_t)nthreads_max);   /* the core of each thread */
    if (!buf || !next || !bar || !cpus) {
        free(buf), free(next), free(bar), free(cpus);
        return -1;
    }
    atomic_init(&bar->arrived, 0);
    atomic_init(&bar->round, 0);
    atomic_init(&bar->sleepers, 0);
    step_t st = {C, H, Hkv, D, F, Smax, pos, rep, Cq, Ckv, layernorm, eps, 1.0f / sqrtf((float)D),
                 rope_cos, rope_sin, x, buf, NULL, NULL, NULL, NULL, NULL, bar};
    st.qkv = st.h + C;
    st.att = st.qkv + Cq + 2 * Ckv;
    st.o = st.att + Cq;
    st.gu = st.o + C;
    st.act = st.gu + 2 * F;
    float* per_thread_buf = st.act + F;       /* (threads, per_thread) */

    #pragma omp parallel num_threads(nthreads_max)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
#if defined(__linux__)
        cpus[tid] = sched_getcpu();
#else
        cpus[tid] = -1;
#endif
        barrier_wait(bar, nt);
        leave_shared_core(tid, nt, cpus);
        float* s = per_thread_buf + (int64_t)tid * per_thread;  /* (rep, n) scores */
        float* sums = s + rep * n;                          /* (K_max / 32), or qgemm's scratch */
        for (int64_t l = 0; l < L; l++) {
            attention_sub_block(&st, vecs + l * DECODE_VECS, linears + l * DECODE_LINEARS,
                                next + l * N_PHASES, tid, nt, s, sums);
            mlp_sub_block(&st, vecs + l * DECODE_VECS, linears + l * DECODE_LINEARS, next + l * N_PHASES,
                          tid, nt, sums);
        }
        if (logits) {    /* the head: final norm (thread 0), then its GEMV in tasks */
            if (tid == 0) norm(st.h, x, lnf_w, lnf_b, C, layernorm, eps);
            barrier_wait(bar, nt);
            gemv_one(logits, st.h, head, V, C, &next[L * N_PHASES], sums);
        }
    }
    free(buf), free(next), free(bar), free(cpus);
    return 0;
}
