"""Memory safety of the native wrappers (issue: hardening, item 1): outputs must be writable, outputs
that overlap inputs give the references' results, quantized kernels check their layouts against the
arrays, and the int8-activation kernels propagate NaN. A crash would take pytest down with it, so
the end-to-end read-only case runs in a subprocess."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.kernels import native, reference
from minillm.quant import _native as qnative
from minillm.quant.ggml_quants import quantize_blocks
from minillm.quant.linear import GGMLLinear, Int4Linear
from minillm.quant.llm_int8 import quantize_llm_int8
from minillm.quant.rtn import quantize_int4

pytestmark = pytest.mark.skipif(native.lib is None, reason="native kernels not built")


def _f(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _calls(rng):
    """kernel name -> (output names, args by name), small shapes, every native kernel that writes."""
    B, H, T, D, N, C = 1, 2, 3, 4, 5, 6
    q, k, v = _f(rng, B, H, T, D), _f(rng, B, H, T, D), _f(rng, B, H, T, D)
    lse = np.zeros((B, H, T), np.float32)
    out = np.zeros((B, H, T, D), np.float32)
    reference.attention_forward(out, lse, q, k, v, 0.5)
    e = lambda *s: np.zeros(s, np.float32)
    return {
        "matmul": (("out",), dict(out=e(N, C), x=_f(rng, N, C), w=_f(rng, C, C))),
        "attention_forward": (("out", "lse"), dict(out=e(B, H, T, D), lse=e(B, H, T), q=q, k=k, v=v, scale=0.5)),
        "attention_backward": (("dq", "dk", "dv"), dict(dq=e(B, H, T, D), dk=e(B, H, T, D), dv=e(B, H, T, D),
                                                       dout=_f(rng, B, H, T, D), q=q, k=k, v=v, out=out, lse=lse,
                                                       scale=0.5)),
        "attention_decode": (("out",), dict(out=e(B, H, D), q=_f(rng, B, H, D), k_cache=_f(rng, B, H, 4, D),
                                            v_cache=_f(rng, B, H, 4, D), lengths=np.array([3]), scale=0.5)),
        "layernorm_forward": (("y", "mean", "rstd"), dict(y=e(N, C), mean=e(N), rstd=e(N), x=_f(rng, N, C),
                                                          w=_f(rng, C), b=_f(rng, C), eps=1e-5)),
        "layernorm_backward": (("dx", "dw", "db"), dict(dx=e(N, C), dw=e(C), db=e(C), dy=_f(rng, N, C),
                                                        x=_f(rng, N, C), w=_f(rng, C), mean=_f(rng, N),
                                                        rstd=np.abs(_f(rng, N)))),
        "rmsnorm_forward": (("y", "rstd"), dict(y=e(N, C), rstd=e(N), x=_f(rng, N, C), w=_f(rng, C), eps=1e-5)),
        "rmsnorm_backward": (("dx", "dw"), dict(dx=e(N, C), dw=e(C), dy=_f(rng, N, C), x=_f(rng, N, C),
                                                w=_f(rng, C), rstd=np.abs(_f(rng, N)))),
        "gelu_forward": (("y",), dict(y=e(N, C), x=_f(rng, N, C))),
        "gelu_backward": (("dx",), dict(dx=e(N, C), dy=_f(rng, N, C), x=_f(rng, N, C))),
        "swiglu_forward": (("y",), dict(y=e(N, C), a=_f(rng, N, C), b=_f(rng, N, C))),
        "swiglu_backward": (("da", "db"), dict(da=e(N, C), db=e(N, C), dy=_f(rng, N, C), a=_f(rng, N, C),
                                              b=_f(rng, N, C))),
        "rope": (("out",), dict(out=e(B, H, T, D), x=_f(rng, B, H, T, D), cos=_f(rng, T, D // 2),
                                sin=_f(rng, T, D // 2))),
        "cross_entropy": (("loss", "dlogits"), dict(loss=e(N), dlogits=e(N, C), logits=_f(rng, N, C),
                                                    targets=np.arange(N) % C, z_loss=1e-4, grad_scale=0.2)),
        "adamw_step": (("p", "m", "v"), dict(p=_f(rng, N, C), g=_f(rng, N, C), m=_f(rng, N, C),
                                             v=np.abs(_f(rng, N, C)), lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8,
                                             weight_decay=0.1, step=3)),
    }


@pytest.mark.parametrize("name", sorted(_calls(np.random.default_rng(0))))
def test_read_only_output_is_a_clear_error(name):
    outs, args = _calls(np.random.default_rng(0))[name]
    for o in outs:
        a = {n: (x.copy() if isinstance(x, np.ndarray) else x) for n, x in args.items()}
        before = a[o].copy()
        a[o].flags.writeable = False
        with pytest.raises(ValueError, match=rf"^{o}: expected a writable array"):
            getattr(native, name)(*a.values())
        np.testing.assert_array_equal(a[o], before)


def test_read_only_memmap_weights_then_adamw_is_an_error_not_sigsegv(tmp_path):
    """The path of the report: weights loaded with mmap=True, then one optimizer step."""
    script = textwrap.dedent(f"""
        import numpy as np
        from minillm.io.safetensors import load_safetensors, save_safetensors
        from minillm.optim import AdamW
        save_safetensors({str(tmp_path / 'w.safetensors')!r}, {{"w": np.ones((64, 64), np.float32)}})
        p = load_safetensors({str(tmp_path / 'w.safetensors')!r}, mmap=True)
        opt = AdamW(p, lr=1e-3)
        try:
            opt.step({{"w": np.ones((64, 64), np.float32)}})
        except ValueError as e:
            print("ERROR", e)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert "ERROR p: expected a writable array" in r.stdout, r.stdout + r.stderr


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_outputs_overlapping_inputs_match_the_reference(seed, data):
    """An output given as one of the inputs (out=x), or as a view shifted into an input, gives what
    the reference gives on separate copies of the inputs."""
    calls = _calls(np.random.default_rng(seed))
    name = data.draw(st.sampled_from(sorted(calls)))
    outs, args = calls[name]
    o = data.draw(st.sampled_from(outs))
    ins = [n for n, x in args.items() if n not in outs and isinstance(x, np.ndarray) and x.dtype == np.float32
           and x.size >= args[o].size]
    if not ins:
        return
    i = data.draw(st.sampled_from(ins))
    shift = data.draw(st.integers(0, args[i].size - args[o].size))
    got = {n: (x.copy() if isinstance(x, np.ndarray) else x) for n, x in args.items()}
    got[o] = got[i].reshape(-1)[shift:shift + args[o].size].reshape(args[o].shape)   # overlaps input i
    want = {n: (x.copy() if isinstance(x, np.ndarray) else x) for n, x in got.items()}  # separate copies
    getattr(reference, name)(*want.values())
    expected_in = got[i].copy()
    expected_in.reshape(-1)[shift:shift + args[o].size] = want[o].reshape(-1)
    getattr(native, name)(*got.values())
    for n in outs:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {n} (alias of {i})")
    np.testing.assert_allclose(got[i], expected_in, rtol=1e-4, atol=1e-5)


def test_rope_in_place_matches_the_reference():
    rng = np.random.default_rng(1)
    x, cos, sin = _f(rng, 2, 3, 5, 8), _f(rng, 5, 4), _f(rng, 5, 4)
    want = np.empty_like(x)
    reference.rope(want, x.copy(), cos, sin)
    for kernel in (native.rope, reference.rope):
        y = x.copy()
        kernel(y, y, cos, sin)
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_overlapping_outputs_are_rejected():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="outputs must not share memory"):
        native.swiglu_backward(a, a, np.ones((4, 6), np.float32), np.ones((4, 6), np.float32),
                               np.ones((4, 6), np.float32))


# ----------------------------------------------------------------------------- quantized kernels
def test_kernel_checks_row_bytes_and_n_scales_against_the_format():
    rng = np.random.default_rng(0)
    packed, scale, zero = quantize_int4(_f(rng, 8, 64), 32)
    ok = qnative.Kernel("int4", 8, 64, packed, scale, zero, 32, 32, 16)
    assert ok.matmul(_f(rng, 1, 64)).shape == (1, 8)
    # a row_bytes too small for K, consistent with a smaller array: the C code would read past it
    with pytest.raises(ValueError, match=r"row_bytes, n_scales: int4 with N=8, K=64 needs 32, 16, got 1, 16"):
        qnative.Kernel("int4", 8, 64, packed[:, :1].copy(), scale, zero, 32, 1, 16)
    with pytest.raises(ValueError, match="row_bytes, n_scales"):
        qnative.Kernel("int4", 8, 64, packed, scale[:, :1].copy(), zero[:, :1].copy(), 32, 32, 8)
    with pytest.raises(ValueError, match="scale, zero: int4 needs a scale array and a zero array"):
        qnative.Kernel("int4", 8, 64, packed, scale, None, 32, 32, 16)
    # 2^20 rows claimed over a small array
    with pytest.raises(ValueError, match="expected .* bytes"):
        qnative.Kernel("int8", 2**20, 64, np.zeros((2, 64), np.int8), np.zeros(2**20, np.float32), None, 0, 64,
                       2**20)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_K", "q6_K"])
def test_int8_activation_kernel_rejects_byte_blocks(fmt):
    blocks = quantize_blocks(_f(np.random.default_rng(0), 4, 256), fmt)
    with pytest.raises(TypeError, match="blocks: expected a 2-D array of the"):
        qnative.GGMLBlockKernel(fmt, blocks.view(np.uint8), act_int8=True)   # K would be read as 32/256 x bytes
    with pytest.raises(TypeError, match="blocks"):
        qnative.GGMLBlockKernel(fmt, blocks.view(np.uint8))


def _int8_act_layers(rng):
    w = _f(rng, 8, 256)
    layers = {"int4_q8": Int4Linear(*quantize_int4(w, 64), 64, act_int8=True)}
    for fmt in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"):   # csrc/qgemm.c
        layers[f"ggml_{fmt}"] = GGMLLinear(fmt, quantize_blocks(w, fmt), act_int8=True)
    layers["llm_int8"] = quantize_llm_int8(w, threshold=1e9)
    return layers


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_int8_activation_kernels_propagate_nan(bad):
    """NaN (or inf) in a row of x: that row's outputs are NaN, the other rows are unchanged."""
    rng = np.random.default_rng(0)
    x = _f(rng, 2, 256)
    for name, lin in _int8_act_layers(rng).items():
        clean = lin.matmul(x)
        xb = x.copy()
        xb[0, 37] = bad
        got = lin.matmul(xb)
        assert np.isnan(got[0]).all(), f"{name}: {got[0]}"
        np.testing.assert_array_equal(got[1], clean[1], err_msg=name)
