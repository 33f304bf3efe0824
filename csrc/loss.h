/* csrc/loss.h -- fused softmax cross-entropy with z-loss.
 * Reference: minillm/kernels/reference.py:cross_entropy */
#ifndef MINILLM_LOSS_H
#define MINILLM_LOSS_H
#include <stdint.h>

/* loss (N,), dlogits (N, V) <- logits (N, V), targets (N,) with targets[i] < V; a negative target
 * marks an ignored row (loss 0, gradient 0). */
void cross_entropy(float* loss, float* dlogits, const float* logits, const int32_t* targets,
                   int64_t N, int64_t V, float z_loss, float grad_scale);

#endif
