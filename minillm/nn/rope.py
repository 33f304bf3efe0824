"""Rotary position embedding, RoPE (Su et al. 2021, eq. 34), in the "rotate half" channel layout of
Hugging Face Llama: channel i is paired with channel i + D/2 and the pair is rotated by angle
pos * inv_freq[i], inv_freq[i] = base^(-2i/D).

rope_parameters is the one place where the frequencies are chosen. Its `scaling` argument, a
Hugging Face style rope_scaling dict ({"rope_type": ..., "factor": s, ...}), selects a context-
extension method; each one only changes inv_freq (and, for YaRN, a temperature on cos/sin), so the
rotation, its kernel and its backward are shared by all of them:

  linear   position interpolation, PI (Chen et al. 2023): every frequency divided by s, i.e.
           position m is read as m / s.
  ntk      "NTK-aware" scaling (bloc97, 2023): the base is raised to base * s^(D/(D-2)), so the
           highest frequency is kept and the lowest is interpolated by exactly s.
  dynamic  dynamic NTK (emozilla, 2023): NTK with the factor chosen from the current length L,
           base * (s L / L0 - (s - 1))^(D/(D-2)); no change while L <= L0.
  yarn     YaRN (Peng et al. 2023, Sec. 3.2-3.4, "NTK-by-parts" + temperature): dimensions whose
           wavelength is short compared to L0 (more than beta_fast rotations) keep their frequency,
           those with fewer than beta_slow rotations are interpolated by s, a linear ramp in between;
           cos and sin are multiplied by sqrt(1/t) = 0.1 ln(s) + 1.
  llama3   Llama 3.1 (Meta 2024): like YaRN's by-parts rule but on wavelengths with thresholds
           L0/high_freq_factor and L0/low_freq_factor, and a smooth blend between, no temperature.

Every rule matches transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS (tests/nn/test_rope_scaling.py);
"ntk" has no Hugging Face type of its own and equals their "dynamic" rule at L = s L0 with factor 1.
Here the frequencies are computed in float64 (Hugging Face uses float32)."""
import math

import numpy as np

from .. import kernels

ROPE_TYPES = ("default", "linear", "ntk", "dynamic", "yarn", "llama3")


def rope_type(scaling):
    """The rope_type of a Hugging Face style scaling dict ("type" is the older spelling)."""
    if scaling is None:
        return "default"
    if not isinstance(scaling, dict):
        raise TypeError(f"scaling: expected a dict or None, got {type(scaling).__name__}")
    return scaling.get("rope_type", scaling.get("type", "default"))


def _factor(scaling, name="factor"):
    s = scaling.get(name)
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not s >= 1.0:
        raise ValueError(f"scaling: {name!r} must be a number >= 1, got {s!r}")
    return float(s)


def _original_length(scaling, seq_len):
    """L0, the context the model was trained at: the dict's original_max_position_embeddings, else
    seq_len (as Hugging Face falls back to max_position_embeddings)."""
    L0 = scaling.get("original_max_position_embeddings", seq_len)
    if not isinstance(L0, (int, np.integer)) or L0 < 1:
        raise ValueError(f"scaling: needs original_max_position_embeddings (or seq_len) as a positive int, "
                         f"got {L0!r}")
    return int(L0)


# One rule per rope_type: (inv_freq (D/2,), D, base, scaling, seq_len) -> (inv_freq', attention factor).
def _default(inv_freq, D, base, scaling, seq_len):
    return inv_freq, 1.0


def _linear(inv_freq, D, base, scaling, seq_len):      # PI: theta_i / s  <=>  position m read as m / s
    return inv_freq / _factor(scaling), 1.0


def _ntk(inv_freq, D, base, scaling, seq_len):         # base' = base * s^(D/(D-2)): theta_{D/2-1} / s exactly
    s = _factor(scaling)
    return 1.0 / (base * s ** (D / (D - 2))) ** (np.arange(0, D, 2, dtype=np.float64) / D), 1.0


def _dynamic(inv_freq, D, base, scaling, seq_len):     # NTK with s' = s L / L0 - (s - 1), never below 1
    s = _factor(scaling)
    L0 = _original_length(scaling, seq_len)
    L = max(L0 if seq_len is None else int(seq_len), L0)
    base_l = base * (s * L / L0 - (s - 1)) ** (D / (D - 2))
    return 1.0 / base_l ** (np.arange(0, D, 2, dtype=np.float64) / D), 1.0


def _yarn_attention_factor(scaling, s):
    def mscale(scale, m=1.0):               # sqrt(1/t) = 0.1 ln(s) + 1 (YaRN eq. 22)
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = mscale(s, m) / mscale(s, m_all) if (m and m_all) else mscale(s)
    return float(attention_factor)


def _yarn(inv_freq, D, base, scaling, seq_len):
    L0 = _original_length(scaling, seq_len)
    if scaling.get("factor") is None:       # Hugging Face: s = max_position_embeddings / L0
        if seq_len is None:
            raise ValueError("scaling: yarn needs 'factor' or seq_len")
        s = seq_len / L0
    else:
        s = _factor(scaling)
    beta_fast = scaling.get("beta_fast") or 32.0   # rotations over L0 above which we extrapolate
    beta_slow = scaling.get("beta_slow") or 1.0    # ... below which we interpolate

    def dim_of(rotations):                  # the (fractional) dimension index 2i/... whose wavelength
        # fits `rotations` times in L0: L0 / (2 pi base^(2i/D)) = rotations, solved for i
        return D * math.log(L0 / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_of(beta_fast), dim_of(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, D - 1)
    if low == high:
        high += 0.001                       # avoid 0/0 in the ramp, as Hugging Face does
    ramp = np.clip((np.arange(D // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)  # (D/2,)
    keep = 1.0 - ramp                       # 1: extrapolate (original frequency), 0: interpolate
    inv_freq = inv_freq / s * (1.0 - keep) + inv_freq * keep                            # (D/2,)
    return inv_freq, _yarn_attention_factor(scaling, s)


def _llama3(inv_freq, D, base, scaling, seq_len):
    # wavelength lambda_i = 2 pi / theta_i compared with L0 / high and L0 / low
    s = _factor(scaling)
    L0 = _original_length(scaling, seq_len)
    try:
        lo_f, hi_f = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    except KeyError as e:
        raise ValueError(f"scaling: llama3 needs {e.args[0]!r}") from None
    if not hi_f > lo_f:
        raise ValueError(f"scaling: high_freq_factor must exceed low_freq_factor, got {hi_f} <= {lo_f}")
    wavelen = 2 * math.pi / inv_freq                                                      # (D/2,)
    scaled = np.where(wavelen > L0 / lo_f, inv_freq / s, inv_freq)    # long waves: interpolate
    smooth = (L0 / wavelen - lo_f) / (hi_f - lo_f)                    # 0 at L0/lo_f .. 1 at L0/hi_f
    blended = (1 - smooth) * scaled / s + smooth * scaled
    medium = (wavelen >= L0 / hi_f) & (wavelen <= L0 / lo_f)
    return np.where(medium, blended, scaled), 1.0


RULES = {"default": _default, "linear": _linear, "ntk": _ntk, "dynamic": _dynamic, "yarn": _yarn,
         "llama3": _llama3}
assert tuple(RULES) == ROPE_TYPES


def rope_parameters(head_dim, base=10000.0, scaling=None, seq_len=None):
    """-> (inv_freq (D/2,) float64, attention_factor float). Without scaling: base^(-2i/D), 1.0.

    scaling: None or a Hugging Face style dict, see the module docstring; RULES holds one rule per
    rope_type. seq_len: the model's maximum length at construction (Hugging Face's
    max_position_embeddings, the default for original_max_position_embeddings), or for "dynamic"
    the current sequence length."""
    if head_dim % 2:
        raise ValueError(f"head_dim: RoPE needs an even head dimension, got {head_dim}")
    kind = rope_type(scaling)
    if kind not in RULES:
        raise ValueError(f"scaling: unsupported rope_type {kind!r}; expected one of {ROPE_TYPES}")
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)   # (D/2,) theta_i
    return RULES[kind](inv_freq, head_dim, base, scaling, seq_len)


def rope_tables(positions, inv_freq, attention_factor=1.0, dtype=np.float32):
    """cos and sin of pos * inv_freq for each position: (T,) int, (D/2,) -> (T, D/2), (T, D/2).
    Angles are computed in float64 (float32 loses precision for positions beyond ~10^4)."""
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    return ((np.cos(ang) * attention_factor).astype(dtype),
            (np.sin(ang) * attention_factor).astype(dtype))


def rope_forward(x, cos, sin):  # (B, H, T, D), (T, D/2), (T, D/2) -> (B, H, T, D)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    kernels.rope(out, x, cos, sin)
    return out, (cos, sin)


def rope_backward(dout, cache):  # the rotation is orthogonal: its transpose rotates by -angle
    cos, sin = cache
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(dout)
    kernels.rope(dx, dout, cos, np.ascontiguousarray(-sin))
    return dx
