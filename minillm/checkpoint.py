"""Training checkpoints: a folder per step holding model.safetensors, optimizer.safetensors and
state.json (config, training state, and the SHA-256 of each tensor file).

Saving writes everything into a temporary folder, then renames it into place and only then updates
the `latest` pointer (itself written atomically), so an interrupted save never damages the previous
checkpoint. Loading verifies the hashes, so a truncated or bit-flipped file raises a clear error.
"""
import hashlib
import json
import os
import shutil
import tempfile

from .io.atomic import atomic_write
from .io.safetensors import load_safetensors, save_safetensors
from .model import ModelConfig, Transformer

FILES = ("model.safetensors", "optimizer.safetensors")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(out_dir, model, optimizer, state, keep=2):
    """Write checkpoint `step_<state["step"]>` under out_dir and point `latest` at it.
    state: JSON-serialisable dict with at least "step". Keeps the newest `keep` checkpoints."""
    step = int(state["step"])
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, f"step_{step:07d}")
    tmp = tempfile.mkdtemp(prefix=".step_tmp_", dir=out_dir)
    try:
        save_safetensors(os.path.join(tmp, "model.safetensors"), model.params)
        opt_step, opt_state = optimizer.state_dict()
        save_safetensors(os.path.join(tmp, "optimizer.safetensors"), opt_state)
        meta = {"model_config": model.config.to_dict(), "optimizer_step": opt_step, "state": state,
                "sha256": {f: _sha256(os.path.join(tmp, f)) for f in FILES}}
        with atomic_write(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with atomic_write(os.path.join(out_dir, "latest"), "w") as f:
        f.write(os.path.basename(final))
    old = sorted(d for d in os.listdir(out_dir) if d.startswith("step_"))[:-keep]
    for d in old:
        shutil.rmtree(os.path.join(out_dir, d), ignore_errors=True)
    return final


def latest_checkpoint(out_dir):
    """Path of the checkpoint `latest` points at, or None if there is none."""
    pointer = os.path.join(out_dir, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        path = os.path.join(out_dir, f.read().strip())
    if not os.path.isdir(path):
        raise ValueError(f"{pointer}: points at missing checkpoint {path}")
    return path


def load_checkpoint(path):
    """-> (model, optimizer_step, optimizer_state, state). Raises ValueError if anything is
    missing, truncated or altered since it was saved: a state.json of the wrong shape (not UTF-8,
    nested past the recursion limit, a list where an object belongs, a missing key) included."""
    try:
        return _load_checkpoint(path)
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.path.join(path, 'state.json')}: malformed checkpoint metadata "
                         f"({type(e).__name__}: {str(e)[:200]})") from None


def _load_checkpoint(path):
    meta_path = os.path.join(path, "state.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: not a checkpoint (no state.json)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path}: corrupt checkpoint metadata: {e}") from None
    for f in FILES:
        p = os.path.join(path, f)
        if not os.path.exists(p):
            raise ValueError(f"{path}: checkpoint is missing {f}")
        if _sha256(p) != meta["sha256"][f]:
            raise ValueError(f"{p}: checkpoint file is corrupted or truncated (SHA-256 mismatch)")
    cfg = ModelConfig(**meta["model_config"])
    model = Transformer(cfg, params=load_safetensors(os.path.join(path, "model.safetensors")))
    opt_state = load_safetensors(os.path.join(path, "optimizer.safetensors"))
    return model, meta["optimizer_step"], opt_state, meta["state"]
