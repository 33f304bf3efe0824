"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the
target. A crash or exception mid-write leaves the previous file untouched (rename is atomic on POSIX).

This module imports nothing of minillm's, so every layer may use it (tokenizer/ included)."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """`with atomic_write(p) as f: f.write(...)` -- p appears whole or not at all."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data):
    """Write `data` (bytes) to `path` atomically: the file appears whole or not at all."""
    with atomic_write(path, "wb") as f:
        f.write(data)
