"""GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", Algorithm 1). Where RTN (rtn.py) rounds each weight alone, GPTQ quantizes the columns
of W (N, K) one at a time and pushes each column's rounding error onto the columns not yet quantized,
weighted by the inverse Hessian of the layer's squared output error ||W X - W_hat X||^2:

  H = 2 X X^T / n        (K, K), from calibration inputs X of this layer (eq. 1's Hessian)
  H += damp * mean(diag H) * I          (dampening; raised tenfold while the Cholesky fails)
  U = chol(H^-1)^T       upper Cholesky factor of the inverse (Sec. 4, step 3: "Cholesky Reformulation")
  for each column i:  q_i = quant(w_i);  err = (w_i - q_i) / U_ii;  W[:, i:] -= err U[i, i:]

gptq_fast adds lazy batch updates (Sec. 4, step 2): columns are processed in blocks of 128, the
updates inside a block touch only that block, and the rest of W receives one rank-128 GEMM per
block. act_order quantizes columns by decreasing diag(H) (the "desc_act" heuristic); with groups it
uses static groups: every group's scale and zero point are fixed up front from the original weights
in natural column order, so the stored layout stays contiguous groups. Without act_order a group's
parameters are chosen when the algorithm reaches its first column, from the error-updated weights.
gptq_reference is the plain column loop, kept unoptimized as the oracle for gptq_fast.

Grids (rtn.py): bits=4 (3) -> group-wise asymmetric INT4 (codes 0..15; INT3: 0..7); bits=8 -> per-channel symmetric
INT8 (codes -127..127). Both return (codes (N, K) int, scale, zero) in natural column order.
"""
import numpy as np

from .rtn import INT8_MAX, check_bits, check_group_size, int4_params, int8_params


def hessian(X):  # (n, K) calibration inputs -> (K, K) float64
    """H = 2 X^T X / n (rows of X are tokens)."""
    X = np.asarray(X, dtype=np.float64)
    return 2.0 * (X.T @ X) / max(1, X.shape[0])


def inverse_cholesky(H, damp=0.01, max_tries=6):  # (K, K) -> upper U with U^T U = (H + lambda I)^-1
    """Damped inverse-Hessian Cholesky factor; multiplies the damping by 10 while H + lambda I is not
    numerically positive definite."""
    K = H.shape[0]
    lam = damp * float(np.mean(np.diag(H)))
    lam = lam if lam > 0 else damp
    for _ in range(max_tries):
        try:
            Hd = H + lam * np.eye(K)
            Linv = np.linalg.inv(np.linalg.cholesky(Hd))                              # (K, K) lower
            Hinv = Linv.T @ Linv                                                      # (H + lam I)^-1
            return np.linalg.cholesky(Hinv).T, lam
        except np.linalg.LinAlgError:
            lam *= 10.0
    raise ValueError(f"H: the Hessian is not positive definite even with damping {lam / 10:.3g} "
                     f"({max_tries} tries, x10 each): the calibration inputs of this layer are degenerate "
                     f"(too few tokens for {K} input channels, or constant/duplicated channels). "
                     "Use more calibration tokens or a larger damp.")


class _Grid:
    """The quantization grid of one weight matrix: which scale/zero column i uses, and when groups
    are (re)fitted. Mirrors GPTQ's `Quantizer` object."""

    def __init__(self, W0, bits, group_size, perm, static):
        N, K = W0.shape
        self.bits, self.G, self.perm, self.static = bits, group_size, perm, static
        if bits == 8:
            self.qmin, self.qmax = -INT8_MAX, INT8_MAX
            self.scale = np.repeat(int8_params(W0).astype(np.float64)[:, None], 1, axis=1)  # (N, 1)
            self.scale[self.scale == 0] = 1.0
            self.zero = np.zeros((N, 1))
        else:
            check_group_size(group_size, K)
            self.qmin, self.qmax = 0, check_bits(bits)
            self.scale = np.zeros((N, K // group_size))
            self.zero = np.zeros((N, K // group_size))
            if static:  # fixed from the original weights, natural column order
                s, z = int4_params(W0.astype(np.float32), group_size, self.qmax)
                self.scale[:], self.zero[:] = s, z

    def group(self, i):  # permuted column index -> group index (natural order)
        return 0 if self.bits == 8 else self.perm[i] // self.G

    def maybe_fit(self, i, Wgroup):  # at the first column of a dynamic group, fit it to the current W
        if self.bits != 8 and not self.static and i % self.G == 0:
            s, z = int4_params(Wgroup.astype(np.float32), self.G, self.qmax)
            self.scale[:, i // self.G], self.zero[:, i // self.G] = s[:, 0], z[:, 0]

    def quantize(self, i, w):  # (N,) -> codes (N,), dequantized (N,)
        g = self.group(i)
        s, z = self.scale[:, g], self.zero[:, g]
        q = np.clip(np.rint(w / s) + z, self.qmin, self.qmax)
        return q, s * (q - z)

    def result(self, Q):
        s = self.scale.astype(np.float32)
        if self.bits == 8:
            return Q.astype(np.int8), s[:, 0], None
        return Q.astype(np.uint8), s, self.zero.astype(np.uint8)


def _prepare(W, H, bits, group_size, act_order, damp):
    if bits not in (3, 4, 8):
        raise ValueError(f"bits: expected 3, 4 or 8, got {bits!r}")
    W = np.array(W, dtype=np.float64)                                                # (N, K) working copy
    H = np.array(H, dtype=np.float64)
    N, K = W.shape
    if H.shape != (K, K):
        raise ValueError(f"H: expected shape ({K}, {K}), got {H.shape}")
    dead = np.diag(H) == 0                 # inputs never active: any value works, pick 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(K)
    grid = _Grid(W, bits, group_size, perm, static=act_order)
    W, H = W[:, perm], H[perm][:, perm]
    U, _ = inverse_cholesky(H, damp)
    return W, U, grid, perm


def gptq_reference(W, H, bits=4, group_size=128, act_order=False, damp=0.01):
    """Algorithm 1 one column at a time, no batching: the oracle. -> (codes, scale, zero)."""
    W, U, grid, perm = _prepare(W, H, bits, group_size, act_order, damp)
    N, K = W.shape
    Q = np.zeros((N, K))
    for i in range(K):
        grid.maybe_fit(i, W[:, i:i + (grid.G or 1)])
        q, dq = grid.quantize(i, W[:, i])
        Q[:, i] = q
        err = (W[:, i] - dq) / U[i, i]                                               # (N,)
        W[:, i:] -= np.outer(err, U[i, i:])                                          # compensate the rest
    return grid.result(Q[:, np.argsort(perm)])


def gptq_fast(W, H, bits=4, group_size=128, act_order=False, damp=0.01, block_size=128):
    """Algorithm 1 with lazy batch updates (blocks of block_size columns). Same result as
    gptq_reference up to float64 rounding. -> (codes, scale, zero)."""
    if bits != 8 and block_size % group_size:
        raise ValueError(f"block_size: must be a multiple of group_size={group_size}, got {block_size}")
    W, U, grid, perm = _prepare(W, H, bits, group_size, act_order, damp)
    N, K = W.shape
    Q = np.zeros((N, K))
    for i1 in range(0, K, block_size):
        i2 = min(i1 + block_size, K)
        W1 = W[:, i1:i2].copy()                                                      # (N, B) this block
        E1 = np.zeros_like(W1)                                                       # scaled errors
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            # a group never straddles blocks (block_size % G == 0), so W1 holds it fully updated
            grid.maybe_fit(i1 + i, W1[:, i:i + (grid.G or 1)])
            q, dq = grid.quantize(i1 + i, W1[:, i])
            Q[:, i1 + i] = q
            err = (W1[:, i] - dq) / U1[i, i]
            W1[:, i:] -= np.outer(err, U1[i, i:])                                    # inside the block only
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]                                              # lazy: one GEMM per block
    return grid.result(Q[:, np.argsort(perm)])
