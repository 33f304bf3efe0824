/* csrc/optim.h -- optimizer kernels. Reference: minillm/kernels/reference.py */
#ifndef MINILLM_OPTIM_H
#define MINILLM_OPTIM_H
#include <stdint.h>

/* One AdamW step in place over n floats; see reference.py:adamw_step. */
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int step, float grad_scale);

/* sum of x[i]^2 over n floats, accumulated in double; see reference.py:sum_squares. */
double sum_squares(const float* x, int64_t n);

#endif
