/* csrc/rope.h -- rotary position embedding, "rotate half" layout.
 * Reference: minillm/kernels/reference.py:rope */
#ifndef MINILLM_ROPE_H
#define MINILLM_ROPE_H
#include <stdint.h>

/* out, x (R, T, D) with R = B * H; cos, sin (T, D / 2); D even. out may alias x.
 * The backward pass is rope(dx, dout, cos, -sin). */
void rope(float* out, const float* x, const float* cos, const float* sin, int64_t R, int64_t T,
          int64_t D);

#endif
