/* csrc/activations.h -- elementwise GELU (tanh form) and SwiGLU over n floats.
 * Reference: minillm/kernels/reference.py:gelu_forward, gelu_backward, swiglu_forward,
 * swiglu_backward. */
#ifndef MINILLM_ACTIVATIONS_H
#define MINILLM_ACTIVATIONS_H
#include <stdint.h>

void gelu_forward(float* y, const float* x, int64_t n);
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n);
/* y = silu(a) * b */
void swiglu_forward(float* y, const float* a, const float* b, int64_t n);
void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* b,
                     int64_t n);

#endif
