"""Importance matrices (llama.cpp's imatrix tool): for every linear layer, the sum over calibration
tokens of x_j^2 for each input channel j, and how many tokens were summed. The ggml quantizers
weight each weight's error by the mean x_j^2 of its input channel (ggml_quants.quantize_blocks'
`imatrix`), so channels that carry large activations are kept more precisely.

Files, as llama.cpp reads them:
  GGUF (what current llama.cpp writes): general.type = "imatrix", imatrix.datasets (strings),
      imatrix.chunk_count and imatrix.chunk_size (u32); per layer "<name>.in_sum2" F32 (n_mat, K)
      and "<name>.counts" F32 (n_mat, 1). The quantizer uses in_sum2 / counts (1 where a count is 0).
  legacy .dat: i32 entry count; per entry i32 name length, the name, i32 ncall, i32 value count,
      f32 values; then optionally i32 chunk count, i32 length and the dataset name. The quantizer
      uses values / ncall (the values as they are when ncall is 0).
"""
import struct
from dataclasses import dataclass, field

import numpy as np

from ..io.atomic import atomic_write
from ..io.gguf import ARRAY, STRING, U32, read_gguf, write_gguf
from ..model import Transformer

F32 = np.float32


@dataclass
class Imatrix:
    """sums {layer name: (n_mat * K,) float32 sums of x^2}, counts {layer name: (n_mat,) token counts}."""
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: list = field(default_factory=list)
    legacy: bool = False

    def importance(self):
        """{layer name: (n_mat * K,) float32}: the weights the quantizers take, normalized exactly as
        llama.cpp's quantize tool does it (sums / count in float32)."""
        out = {}
        for name, s in self.sums.items():
            c = np.asarray(self.counts[name], dtype=np.int64)
            if self.legacy:
                out[name] = (s / F32(c[0])).astype(F32) if c[0] > 0 else s.astype(F32)
                continue
            rows = s.reshape(len(c), -1)                                             # (n_mat, K)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.where(c[:, None] > 0, rows / c.astype(F32)[:, None], F32(1))
            out[name] = q.astype(F32).reshape(-1)
        return out


# ------------------------------------------------------------------ collecting
class _Accumulator:
    """Stands in for a linear layer in Transformer(quantized=...): adds its input's x^2 to the sums."""

    def __init__(self, w):
        self.w, self.shape = w, w.shape
        self.sum = np.zeros(w.shape[1], dtype=np.float64)
        self.count = 0

    def matmul(self, x):  # (M, K) -> (M, N)
        x = np.asarray(x, dtype=F32)
        self.sum += np.einsum("mk,mk->k", x, x, dtype=np.float64)
        self.count += len(x)
        return x @ self.w.T


def collect_imatrix(model, chunks, names=None, progress=None):
    """Run the float model over token chunks (n, T) and sum x^2 at the input of each linear layer
    in `names` (default: every 2-D block weight). -> {param name: (sums (K,) float32, count)}."""
    if not isinstance(model, Transformer) or model.quantized:
        raise TypeError("model: expected a float minillm Transformer (load it with dequantize=True)")
    chunks = np.asarray(chunks)
    if chunks.ndim != 2 or chunks.size == 0:
        raise ValueError(f"chunks: expected a non-empty (n, T) token array, got shape {chunks.shape}")
    if names is None:
        names = [n for n, w in model.params.items() if w.ndim == 2 and ".layers." in n]
    acc = {n: _Accumulator(model.params[n]) for n in names}
    run = Transformer(model.config, params=model.params, quantized=acc)
    for i, row in enumerate(chunks):
        run.forward(row[None, :])
        if progress:
            progress(i + 1, len(chunks))
    return {n: (a.sum.astype(F32), a.count) for n, a in acc.items()}


# ------------------------------------------------------------------ files
def save_imatrix(path, imatrix):
    """Write GGUF (any name) or the legacy format (a name ending in .dat)."""
    if str(path).endswith(".dat"):
        return _save_dat(path, imatrix)
    kvs = [("general.type", STRING, "imatrix"), ("imatrix.datasets", ARRAY, (STRING, list(imatrix.datasets))),
           ("imatrix.chunk_count", U32, int(imatrix.chunk_count)), ("imatrix.chunk_size", U32, int(imatrix.chunk_size))]
    tensors = []
    for name in sorted(imatrix.sums):
        c = np.asarray(imatrix.counts[name], dtype=F32).reshape(-1)
        s = np.asarray(imatrix.sums[name], dtype="<f4").reshape(len(c), -1)
        tensors.append((f"{name}.in_sum2", "f32", s.shape, s.tobytes()))
        tensors.append((f"{name}.counts", "f32", (len(c), 1), c.astype("<f4").tobytes()))
    write_gguf(path, kvs, tensors)


def _save_dat(path, imatrix):
    out = [struct.pack("<i", len(imatrix.sums))]
    for name in sorted(imatrix.sums):
        c = np.asarray(imatrix.counts[name]).reshape(-1)
        if len(c) != 1:
            raise ValueError(f"imatrix: {name!r} has {len(c)} expert counts; the legacy format holds one")
        raw = name.encode()
        s = np.asarray(imatrix.sums[name], dtype="<f4")
        out.append(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", int(c[0]), len(s)) + s.tobytes())
    dataset = (imatrix.datasets[0] if imatrix.datasets else "").encode()
    out.append(struct.pack("<ii", int(imatrix.chunk_count), len(dataset)) + dataset)
    with atomic_write(path) as f:
        f.write(b"".join(out))


def load_imatrix(path):
    """Read an importance matrix written by llama.cpp or minillm (GGUF or legacy .dat) -> Imatrix.
    A truncated or inconsistent file raises ValueError naming the file and what is wrong."""
    with open(path, "rb") as f:
        head = f.read(4)
    return _load_gguf(path) if head == b"GGUF" else _load_dat(path)


def _load_gguf(path):
    meta, tensors = read_gguf(path)
    if meta.get("general.type", "imatrix") != "imatrix":
        raise ValueError(f"{path}: a GGUF of general.type {meta['general.type']!r}, not an imatrix")
    im = Imatrix(chunk_count=int(meta.get("imatrix.chunk_count", 0)), chunk_size=int(meta.get("imatrix.chunk_size", 0)),
                 datasets=list(meta.get("imatrix.datasets", [])))
    for tname, (t, shape, raw) in tensors.items():
        for suffix, store in ((".in_sum2", im.sums), (".counts", im.counts)):
            if tname.endswith(suffix):
                if t != "f32":
                    raise ValueError(f"{path}: tensor {tname!r} is {t}, an imatrix stores F32")
                store[tname[:-len(suffix)]] = raw.view("<f4").astype(F32)
    for name in set(im.sums) | set(im.counts):
        if name not in im.sums or name not in im.counts:
            raise ValueError(f"{path}: {name!r} has {'sums' if name in im.sums else 'counts'} but no "
                             f"{'counts' if name in im.sums else 'sums'}")
        n, s = len(im.counts[name]), len(im.sums[name])
        if n == 0 or s % n:
            raise ValueError(f"{path}: {name!r} has {s} sums for {n} counts")
        im.counts[name] = np.rint(im.counts[name]).astype(np.int64)
        _check_values(path, name, im.sums[name], im.counts[name])
    if not im.sums:
        raise ValueError(f"{path}: no imatrix entries (expected <name>.in_sum2 and <name>.counts tensors)")
    return im


def _check_values(path, name, sums, counts):
    if not np.all(np.isfinite(sums)) or np.any(sums < 0) or np.any(counts < 0):
        raise ValueError(f"{path}: {name!r} holds negative or non-finite values (sums of squares and "
                         f"counts are >= 0)")


def _load_dat(path):
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt, what):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(buf):
            raise ValueError(f"{path}: truncated imatrix ({what} at byte {pos}, file has {len(buf)} bytes)")
        pos += n
        return struct.unpack_from(fmt, buf, pos - n)

    (n_entries,) = take("<i", "entry count")
    if n_entries < 1 or n_entries > len(buf):
        raise ValueError(f"{path}: not an imatrix file (entry count {n_entries})")
    im = Imatrix(legacy=True)
    for i in range(n_entries):
        (n,) = take("<i", f"entry {i} name length")
        if n < 1 or n > 4096:
            raise ValueError(f"{path}: corrupted imatrix (entry {i} has a name of {n} bytes)")
        name = bytes(take(f"<{n}s", f"entry {i} name")[0]).decode("utf-8", errors="replace")
        ncall, nval = take("<ii", f"entry {i} counts")
        if nval < 1:
            raise ValueError(f"{path}: corrupted imatrix ({name!r} has {nval} values)")
        vals = np.array(take(f"<{nval}f", f"{name!r} values"), dtype=F32)
        im.sums[name], im.counts[name] = vals, np.array([ncall], dtype=np.int64)
        _check_values(path, name, vals, im.counts[name])
    if pos + 4 <= len(buf):
        (im.chunk_count,) = take("<i", "chunk count")
        if pos + 4 <= len(buf):
            (n,) = take("<i", "dataset name length")
            if 0 < n <= len(buf) - pos:
                im.datasets.append(buf[pos:pos + n].decode("utf-8", errors="replace"))
    return im
