"""Training checkpoints: a folder per step holding model.safetensors, optimizer.safetensors and
state.json (config, training state, the SHA-256 of each tensor file, and the SHA-256 of state.json's
own other fields).

Saving writes everything into a temporary folder, then renames it into place and only then updates
the `latest` pointer (itself written atomically), so an interrupted save never damages the previous
checkpoint; the leftovers of a save killed midway (a `.step_tmp_*` folder, a `.latest.*.tmp` file)
are removed by the next save. Old checkpoints are pruned by step number, newest `keep` kept, and the
one `latest` names is never removed. Loading verifies the hashes, so a truncated, bit-flipped or
hand-edited file raises a clear error, and `latest` may only name a `step_*` folder of its own
directory.
"""
import hashlib
import json
import os
import re
import shutil
import tempfile

from .io.atomic import atomic_write
from .io.safetensors import load_safetensors, save_safetensors
from .model import ModelConfig, Transformer

FILES = ("model.safetensors", "optimizer.safetensors")
STEP_DIR = re.compile(r"step_(\d{7,})")          # step_0000450: the only names `latest` may hold
TMP_PREFIX = ".step_tmp_"                          # a checkpoint being written
LATEST_TMP = re.compile(r"\.latest\..*\.tmp")      # atomic_write's temporary for `latest`


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta_digest(meta):
    """SHA-256 of state.json's fields other than its own digest, in a canonical JSON form."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def clean_leftovers(out_dir):
    """Remove what a save killed midway leaves behind: `.step_tmp_*` folders and `.latest.*.tmp`
    files. Only one process writes a checkpoint folder, so none of them belongs to a live save."""
    if not os.path.isdir(out_dir):
        return []
    gone = []
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if name.startswith(TMP_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            gone.append(name)
        elif LATEST_TMP.fullmatch(name) and os.path.isfile(path):
            os.unlink(path)
            gone.append(name)
    return gone


def checkpoint_steps(out_dir):
    """{step: folder name} of the `step_*` checkpoint folders in out_dir."""
    out = {}
    for name in os.listdir(out_dir):
        m = STEP_DIR.fullmatch(name)
        if m and os.path.isdir(os.path.join(out_dir, name)):
            out[int(m.group(1))] = name
    return out


def _prune(out_dir, current, keep):
    """Keep `current` (what `latest` names) and the newest keep - 1 checkpoints before it, by step
    number; folders of a later step belong to an abandoned timeline (a run restarted with
    resume=False, or a rollback) and go too, so a later resume can never pick them up."""
    steps = checkpoint_steps(out_dir)
    older = sorted(s for s in steps if s < current)
    kept = {current, *older[max(0, len(older) - (keep - 1)):]} if keep > 1 else {current}
    for s, name in steps.items():
        if s not in kept:
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def save_checkpoint(out_dir, model, optimizer, state, keep=2):
    """Write checkpoint `step_<state["step"]>` under out_dir and point `latest` at it.
    state: JSON-serialisable dict with at least "step". Keeps the newest `keep` >= 1 checkpoints up
    to this step (by step number), never the one `latest` names."""
    step = int(state["step"])
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep: expected an int >= 1, got {keep!r}")
    if step < 0:
        raise ValueError(f"state: step must be >= 0, got {step}")
    os.makedirs(out_dir, exist_ok=True)
    clean_leftovers(out_dir)
    final = os.path.join(out_dir, f"step_{step:07d}")
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir)
    try:
        save_safetensors(os.path.join(tmp, "model.safetensors"), model.params)
        opt_step, opt_state = optimizer.state_dict()
        save_safetensors(os.path.join(tmp, "optimizer.safetensors"), opt_state)
        meta = {"model_config": model.config.to_dict(), "optimizer_step": opt_step, "state": state,
                "sha256": {f: _sha256(os.path.join(tmp, f)) for f in FILES}}
        meta["meta_sha256"] = _meta_digest(meta)
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
    _prune(out_dir, step, keep)
    return final


def latest_checkpoint(out_dir):
    """Path of the checkpoint `latest` points at, or None if there is none. `latest` must hold the
    name of a `step_*` folder of out_dir itself (no paths: `../x` or `/abs` are refused)."""
    pointer = os.path.join(out_dir, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer, errors="replace") as f:
        name = f.read().strip()
    if not STEP_DIR.fullmatch(name):
        raise ValueError(f"{pointer}: expected the name of a step_NNNNNNN folder beside it, got {name[:80]!r}")
    path = os.path.join(out_dir, name)
    if os.path.islink(path) or not os.path.isdir(path):
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
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict):
        raise ValueError(f"{meta_path}: not a minillm checkpoint's state.json (no sha256 table)")
    # checkpoints saved before state.json carried its own digest have no meta_sha256: they load as
    # before (refusing them would strand existing runs); every save since writes it
    if "meta_sha256" in meta and _meta_digest(meta) != meta["meta_sha256"]:
        raise ValueError(f"{meta_path}: checkpoint metadata was altered since it was saved (SHA-256 mismatch)")
    for f in FILES:
        p = os.path.join(path, f)
        if not os.path.exists(p):
            raise ValueError(f"{path}: checkpoint is missing {f}")
        if _sha256(p) != meta["sha256"].get(f):
            raise ValueError(f"{p}: checkpoint file is corrupted or truncated (SHA-256 mismatch)")
    cfg = ModelConfig(**meta["model_config"])
    model = Transformer(cfg, params=load_safetensors(os.path.join(path, "model.safetensors")))
    opt_state = load_safetensors(os.path.join(path, "optimizer.safetensors"))
    return model, meta["optimizer_step"], opt_state, meta["state"]
