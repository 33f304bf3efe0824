"""Row tiles (csrc/qtiles.c): ggml Q8_0/Q4_0/Q4_1/Q4_K/Q6_K weights repacked into groups of 16 rows for
the int8-activation products on AVX-512 VNNI and AVX2 (the AVX2 kernel against the AVX-512 one: tests/kernels/test_isa.py). The layout against its spec (qtiles.h, read back here
in NumPy), the kernels against matmul_int8_act_reference and against the block kernels they
replace, and the batch invariance the serving engine relies on, for both kernels."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.io.ggml_types import GGML_TYPES
from minillm.quant import _native
from minillm.quant.formats import GGML_BLOCKS
from minillm.quant.ggml_blocks import integer_codes
from minillm.quant.linear import GGMLLinear

from .test_ggml_blocks import random_blocks

TILED = ("q8_0", "q4_0", "q4_1", "q4_K", "q6_K")
native = pytest.mark.skipif(not _native.blocks_available(), reason="C kernels not built")
lib = _native.lib


def tiles_usable():
    return lib is not None and bool(lib.qtiles_usable(GGML_TYPES["q8_0"].id))


def pack(fmt, blocks):
    """csrc's tile layout of blocks (N, K / block) as a uint8 array."""
    t = GGML_TYPES[fmt].id
    N, K = blocks.shape[0], blocks.shape[1] * GGML_BLOCKS[fmt][1]
    out = np.empty(lib.qtiles_bytes(t, N, K), np.uint8)
    raw = np.ascontiguousarray(blocks).view(np.uint8)
    assert lib.qtiles_pack(t, _native.ffi.from_buffer("uint8_t[]", raw), N, K,
                           _native.ffi.from_buffer("uint8_t[]", out)) == 0
    return out


def read_tiles(fmt, tiles, N, K):
    """qtiles.h's layout read back: the codes (N, K) as ggml stores them (Q8_0 signed, 4-bit
    unsigned), and the raw header bytes per row and block, (N, K / block, header bytes)."""
    per, gb = {"q8_0": (32, 544), "q4_0": (32, 288), "q4_1": (32, 320), "q4_K": (256, 2304),
               "q6_K": (256, 3360)}[fmt]
    nblk, groups = K // per, (N + 15) // 16
    g = tiles.reshape(groups, nblk, gb)
    codes = np.zeros((groups * 16, K), np.int16)
    heads = []
    units = 8 if per == 256 else 1
    k = np.arange(32)
    n = np.arange(16)
    idx = (k[None, :] // 4) * 64 + n[:, None] * 4 + k[None, :] % 4                 # (16, 32) tile bytes
    for b in range(nblk):
        for j in range(units):
            if fmt == "q8_0":
                tile = g[:, b, :512]
                c = (tile[:, idx].astype(np.int16) ^ 0x80).astype(np.int8).astype(np.int16)
            elif fmt == "q6_K":                      # nibbles, then top bits: byte i, pair i // 128
                unit = g[:, b, 288 + 384 * j:288 + 384 * (j + 1)]
                lo = np.concatenate([unit[:, :256] & 0xF, unit[:, :256] >> 4], axis=1)
                i = np.arange(512)
                hi = (unit[:, 256 + i % 128] >> (2 * (i // 128))) & 3
                c = (lo | (hi << 4))[:, idx].astype(np.int16)
            else:
                base = 256 + 256 * j if fmt == "q4_K" else 0
                packed = g[:, b, base:base + 256]
                full = np.concatenate([packed & 0xF, packed >> 4], axis=1)             # tile order
                c = full[:, idx].astype(np.int16)
            u0 = b * per + 32 * j
            codes[:, u0:u0 + 32] = c.reshape(groups * 16, 32)
        if fmt == "q6_K":                            # as the block's tail: the 16 scales, then d
            sc = g[:, b, 32:288].reshape(groups, 16, 16).transpose(0, 2, 1)
            heads.append(np.concatenate([sc, g[:, b, 0:32].reshape(groups, 16, 2)], axis=2).reshape(groups * 16, 18))
        elif fmt == "q4_K":
            d = g[:, b, 0:32].reshape(groups, 16, 2)
            dmin = g[:, b, 32:64].reshape(groups, 16, 2)
            sc = g[:, b, 64:256].reshape(groups, 12, 16).transpose(0, 2, 1)
            heads.append(np.concatenate([d, dmin, sc], axis=2).reshape(groups * 16, 16))
        else:
            at = 512 if fmt == "q8_0" else 256
            parts = [g[:, b, at:at + 32].reshape(groups, 16, 2)]
            if fmt == "q4_1":
                parts.append(g[:, b, at + 32:at + 64].reshape(groups, 16, 2))
            heads.append(np.concatenate(parts, axis=2).reshape(groups * 16, -1))
    return codes[:N], np.stack(heads, axis=1)[:N]


@native
@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from(TILED), N=st.integers(1, 40), nb=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_the_layout_holds_every_code_and_header_where_qtiles_h_says(fmt, N, nb, seed):
    """Read back in NumPy, the tiles give ggml's integer codes and the blocks' header bytes (d, m,
    dmin, the 12 scale bytes), and hold exactly the blocks' bytes per weight (rows past N: zeros)."""
    rng = np.random.default_rng(seed)
    b = random_blocks(fmt, (N, nb * (8 if GGML_BLOCKS[fmt][1] == 32 else 1)), rng)
    K = b.shape[1] * GGML_BLOCKS[fmt][1]
    tiles = pack(fmt, b)
    assert tiles.nbytes == (N + 15) // 16 * 16 * b.nbytes // N
    codes, heads = read_tiles(fmt, tiles, N, K)
    u, _, _ = integer_codes(b, fmt)                       # Q8_0: signed codes; 4-bit: 0..15
    np.testing.assert_array_equal(codes, u)
    raw = b.view(np.uint8).reshape(N, b.shape[1], -1)
    head = {"q8_0": raw[:, :, :2], "q4_0": raw[:, :, :2], "q4_1": raw[:, :, :4], "q4_K": raw[:, :, :16],
            "q6_K": raw[:, :, 192:210]}[fmt]
    np.testing.assert_array_equal(heads, head)
    pad = read_tiles(fmt, tiles, (N + 15) // 16 * 16, K)[0][N:]      # zero bytes (Q8_0: code + 128)
    assert (pad == (-128 if fmt == "q8_0" else 0)).all()


def test_sizes_and_packing_reject_other_types_and_ragged_k():
    if lib is None:
        pytest.skip("C kernels not built")
    assert lib.qtiles_bytes(GGML_TYPES["q5_K"].id, 16, 256) == -1
    assert lib.qtiles_bytes(GGML_TYPES["q8_0"].id, 16, 48) == -1           # K not whole blocks
    assert lib.qtiles_bytes(GGML_TYPES["q4_K"].id, 16, 288) == -1
    assert lib.qtiles_bytes(GGML_TYPES["q8_0"].id, -1, 32) == -1
    assert lib.qtiles_bytes(GGML_TYPES["q8_0"].id, 17, 64) == 2 * 2 * 544
    assert lib.qtiles_pack(GGML_TYPES["q5_K"].id, _native.ffi.NULL, 1, 256, _native.ffi.NULL) == -1
    assert lib.qtiles_usable(GGML_TYPES["q5_K"].id) == 0


def _kernel(fmt, b, tiled):
    k = _native.GGMLBlockKernel(fmt, b, act_int8=True)
    if not tiled:
        k.tiled = False                            # the block kernels of csrc/qgemm.c
    elif not k.tiled:
        pytest.skip("no row-tile kernels on this CPU (AVX-512 VNNI or AVX2)")
    return k


@native
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(TILED), M=st.integers(1, 34), N=st.integers(1, 40), nb=st.integers(1, 3),
       scale=st.sampled_from([1e-3, 1.0, 300.0]), seed=st.integers(0, 2**32 - 1))
def test_tiles_equal_the_int8_reference_and_the_block_kernels(fmt, M, N, nb, scale, seed):
    """Up to float32 summation order: the tiles' products against matmul_int8_act_reference (exact
    integer dots in float64) and against qgemm.c's block kernels; M past 16 takes two passes of
    x rows, and past 32 (INT8_MAX_M) the same call still runs the tiles."""
    if not tiles_usable():
        pytest.skip("no row-tile kernels on this CPU (AVX-512 VNNI or AVX2)")
    rng = np.random.default_rng(seed)
    b = random_blocks(fmt, (N, nb * (8 if GGML_BLOCKS[fmt][1] == 32 else 1)), rng)
    x = (rng.standard_normal((M, b.shape[1] * GGML_BLOCKS[fmt][1])) * scale).astype(np.float32)
    got = _kernel(fmt, b, True).matmul(x)
    ref = GGMLLinear(fmt, b, act_int8=True).matmul_int8_act_reference(x)
    blocks = _kernel(fmt, b, False).matmul(x)
    tol = 2e-6 * np.abs(x).sum(axis=1, keepdims=True) * np.abs(GGMLLinear(fmt, b).dequantize()).max() + 1e-30
    assert np.all(np.abs(got - ref) <= tol) and np.all(np.abs(got - blocks) <= tol)


@native
@pytest.mark.parametrize("tiled", [True, False])
@settings(max_examples=25, deadline=None)
@given(fmt=st.sampled_from(TILED), M=st.integers(2, 20), N=st.integers(1, 40), nb=st.integers(1, 3),
       cut=st.data(), seed=st.integers(0, 2**32 - 1))
def test_a_result_does_not_depend_on_the_rows_beside_it_in_x_or_in_w(tiled, fmt, M, N, nb, cut, seed):
    """Both kernels, to the bit: row m of x alone or among M rows; rows a..b of W alone (then at
    other places in their groups of 16) or in the whole W."""
    rng = np.random.default_rng(seed)
    b = random_blocks(fmt, (N, nb * (8 if GGML_BLOCKS[fmt][1] == 32 else 1)), rng)
    k = _kernel(fmt, b, tiled)
    x = rng.standard_normal((M, k.K)).astype(np.float32)
    together = k.matmul(x)
    m = cut.draw(st.integers(0, M - 1))
    assert np.array_equal(k.matmul(x[m:m + 1])[0], together[m])
    lo = cut.draw(st.integers(0, N - 1))
    hi = cut.draw(st.integers(lo + 1, N))
    part = _kernel(fmt, np.ascontiguousarray(b[lo:hi]), tiled)
    np.testing.assert_array_equal(part.matmul(x), together[:, lo:hi])


@native
def test_the_tile_copy_is_made_at_the_first_int8_product_only():
    """Blocks that never run an int8 product (act_int8 off, the float32 path) get no second copy."""
    b = random_blocks("q4_K", (20, 2), np.random.default_rng(0))
    k = _native.GGMLBlockKernel("q4_K", b, act_int8=True)
    if not k.tiled:
        pytest.skip("no row-tile kernels on this CPU (AVX-512 VNNI or AVX2)")
    assert k._tiles is None
    k.matmul(np.ones((1, 512), np.float32))
    assert k._tiles is not None and k._tiles[0].nbytes == 32 * b.nbytes // 20
    assert k.decode_weight.fmt & lib.GGML_TILES and k.decode_weight.w == k._tiles[1]
    plain = GGMLLinear("q4_K", b)                       # act_int8 off: its int8 kernel is never run
    plain.matmul(np.ones((1, 512), np.float32))
    assert plain._q8_kernel is None or plain._q8_kernel._tiles is None


@native
def test_minillm_tiles_0_keeps_the_block_kernels():
    code = ("from minillm.quant import _native as n; import numpy as np;"
            "from minillm.quant.ggml_quants import quantize_blocks;"
            "k = n.GGMLBlockKernel('q8_0', quantize_blocks(np.ones((4, 64), np.float32), 'q8_0'), act_int8=True);"
            "print(int(n.lib.qtiles_usable(8)), k.tiled, k.decode_weight.fmt & n.lib.GGML_TILES)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MINILLM_TILES": "0"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False", "0"]


@native
def test_row_tiles_switches_a_layer_between_the_two_kernels():
    """GGMLLinear.row_tiles: off gives the block kernels' products, on again the tiles'; a type
    without tiles refuses True with the reason, and a non-bool is a TypeError."""
    rng = np.random.default_rng(3)
    b = random_blocks("q4_1", (24, 8), rng)
    lin = GGMLLinear("q4_1", b, act_int8=True)
    if not lin.row_tiles:
        pytest.skip("no row-tile kernels on this CPU (AVX-512 VNNI or AVX2)")
    x = rng.standard_normal((2, 256)).astype(np.float32)
    tiles = lin.matmul(x)
    lin.row_tiles = False
    np.testing.assert_array_equal(lin.matmul(x), _kernel("q4_1", b, False).matmul(x))
    lin.row_tiles = True
    np.testing.assert_array_equal(lin.matmul(x), tiles)
    q5 = GGMLLinear("q5_K", random_blocks("q5_K", (4, 1), rng), act_int8=True)
    assert not q5.row_tiles
    with pytest.raises(ValueError, match="row_tiles: no row-tile kernels for q5_K"):
        q5.row_tiles = True
    with pytest.raises(TypeError, match="row_tiles: expected a bool"):
        lin.row_tiles = 1
