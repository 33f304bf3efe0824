/* csrc/isa.h -- runtime choice of the instruction set the kernels run with.
 *
 * One build serves AVX-512 and AVX2 hosts. minillm/kernels/_build.py compiles the extension with a
 * portable baseline (-march=x86-64-v2: SSE4.2, no AVX) and compiles every kernel source
 * (the csrc .c files except isa.c and bpe.c) three times, as generated wrapper files in build/isa/:
 *
 *     avx512   #pragma GCC target("arch=x86-64-v4,avx512vnni")   AVX-512 F/BW/DQ/VL/CD + VNNI + FMA
 *     avx2     #pragma GCC target("arch=x86-64-v3")              AVX2, FMA, F16C, BMI
 *     generic  the baseline itself
 *
 * Each wrapper renames every external function of the kernels (the declarations of the csrc headers and
 * parts.inc) with a suffix (matmul -> matmul__avx512) and #includes the .c file, so a kernel
 * source is written once and picks its code paths with the usual preprocessor tests
 * (#if defined(__AVX512F__) ... #elif defined(__AVX2__) ...). build/isa/dispatch.c defines the
 * public names: each forwards to a function pointer that a constructor sets once, when the
 * extension is loaded, to the variant isa_level() picks. Calls between kernel files (parts.inc:
 * decode.c calling gemv_rows) stay inside one variant.
 *
 * To add a kernel: write csrc/<family>.c and .h as before; nothing else. To use a new instruction
 * set extension inside a variant, test its macro (e.g. __AVX512BF16__) and add it to that
 * variant's target string and to isa_level()'s checks in isa.c (a variant may only be chosen on a
 * CPU that has everything its target string enables).
 *
 * MINILLM_ISA=auto|avx512|avx2|generic forces a variant (default auto: the best this CPU runs);
 * a forced variant the CPU lacks falls back to the best one it has. Python:
 * minillm.kernels.cpu_features() reports the choice and the CPU's features.
 * On other architectures (or without GCC's target pragma) the kernels are compiled once with
 * -march=native and isa_selected() says "native".
 */
#ifndef MINILLM_ISA_H
#define MINILLM_ISA_H
#include <stdint.h>

/* The variant in use: "avx512", "avx2", "generic" (or "native" for a single-variant build). */
const char* isa_selected(void);
/* Bit mask of the CPU's features, bit i for the i-th name of ISA_FEATURE_NAMES in isa.c (the Python
 * side holds the same list: minillm/kernels/native.py). */
int32_t isa_cpu_features(void);
/* 2 avx512, 1 avx2, 0 generic: the variant MINILLM_ISA and the CPU allow (computed once). */
int32_t isa_level(void);

#endif
