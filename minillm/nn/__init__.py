"""Layers as pure functions: `y, cache = <layer>_forward(...)` and `grads = <layer>_backward(dy,
cache)`, forward and backward of one concept side by side in one module. Backward returns fresh
arrays (no accumulation into buffers). Every function works in float32 (native kernels) and in
float64 (NumPy reference kernels, used by the finite-difference checks)."""
from .activations import gelu_backward, gelu_forward, swiglu_backward, swiglu_forward
from .attention import attention_backward, attention_forward
from .embedding import embedding_backward, embedding_forward
from .linear import linear_backward, linear_backward_group, linear_forward, linear_forward_group
from .loss import cross_entropy_backward, cross_entropy_forward
from .norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from .rope import rope_backward, rope_forward, rope_parameters, rope_tables

__all__ = [n for n in dir() if n.endswith(("_forward", "_backward"))] + ["linear_forward_group", "rope_parameters", "rope_tables"]
