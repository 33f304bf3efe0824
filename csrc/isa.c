/* csrc/isa.c -- which kernel variant this CPU runs (the mechanism: isa.h). Compiled once, with the
 * baseline flags: it must run on every CPU, including those that lack the variants' extensions. */
#include <stdlib.h>
#include <string.h>
#include "isa.h"

#if defined(MINILLM_ISA_VARIANTS)
/* Bit i of isa_cpu_features() is ISA_FEATURE_NAMES[i] (__builtin_cpu_supports wants literals). */
static int32_t cpu_features(void) {
    __builtin_cpu_init();
    const int bits[] = {
        __builtin_cpu_supports("sse4.2"), __builtin_cpu_supports("avx"),
        __builtin_cpu_supports("avx2"), __builtin_cpu_supports("fma"),
        __builtin_cpu_supports("f16c"), __builtin_cpu_supports("bmi2"),
        __builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx512bw"),
        __builtin_cpu_supports("avx512dq"), __builtin_cpu_supports("avx512vl"),
        __builtin_cpu_supports("avx512cd"), __builtin_cpu_supports("avx512vnni"),
        __builtin_cpu_supports("avx512bf16"), __builtin_cpu_supports("amx-tile"),
        __builtin_cpu_supports("x86-64-v3"), __builtin_cpu_supports("x86-64-v4"),
    };
    int32_t mask = 0;
    for (int i = 0; i < (int)(sizeof bits / sizeof bits[0]); i++)
        if (bits[i]) mask |= (int32_t)1 << i;
    return mask;
}

/* The best variant the CPU runs: the avx512 variant is compiled for x86-64-v4 + VNNI (isa.h),
 * the avx2 one for x86-64-v3. */
static int32_t cpu_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512vnni")) return 2;
    if (__builtin_cpu_supports("x86-64-v3")) return 1;
    return 0;
}

int32_t isa_level(void) {
    static int32_t level = -1;
    if (level < 0) {
        int32_t best = cpu_level(), want = best;
        const char* env = getenv("MINILLM_ISA");
        if (env != NULL) {
            if (strcmp(env, "avx512") == 0) want = 2;
            else if (strcmp(env, "avx2") == 0) want = 1;
            else if (strcmp(env, "generic") == 0) want = 0;
        }
        level = want < best ? want : best;          /* never a variant the CPU cannot run */
    }
    return level;
}

const char* isa_selected(void) {
    static const char* names[] = {"generic", "avx2", "avx512"};
    return names[isa_level()];
}

int32_t isa_cpu_features(void) { return cpu_features(); }

#else  /* a single-variant build (not x86-64 + GCC): everything was compiled with -march=native */
int32_t isa_level(void) { return 0; }
const char* isa_selected(void) { return "native"; }
int32_t isa_cpu_features(void) { return 0; }
#endif
