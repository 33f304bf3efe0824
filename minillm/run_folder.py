"""A run folder, as `minillm train --out RUN` writes it, and the one way to load it back:

    RUN/
      tokenizer.model      the vocabulary (a minillm BPE file, or the byte tokenizer's one line)
      ckpt/latest          name of the newest checkpoint folder
      ckpt/step_0000450/   model.safetensors, optimizer.safetensors, state.json (minillm.checkpoint)
      metrics.jsonl        one JSON object per optimizer step (step, loss, grad_norm, lr, tokens, ...)
                           and per eval (step, eval_loss) (minillm.metrics)
      train.bin, val.bin   the tokenised pydoc corpus (minillm.io.tokens); data/ holds --data's tokens
      loss.png             the loss curve (with the `plot` extra); tokenizer_cache/ the trained BPE

Loading a run from Python (this is the documented loader; README "Loading a run folder"):

    from minillm.run_folder import load_run
    model, tokenizer = load_run("runs/minillm")   # newest checkpoint + the run's tokenizer
    ids = tokenizer.encode("The for statement")
    logits = model.forward(np.array([ids]))       # (1, T, V)
    steps = [r for r in read_run_metrics("runs/minillm") if "loss" in r]   # the loss curve

`clear_run` is what `minillm train --fresh` uses: it deletes only the entries above and refuses a
folder holding anything else, so pointing --out at the wrong folder never deletes your files.

The generate/chat/quantize/sft/rag commands and the data pipeline's perplexity filter all load runs
through this module.
"""
import json
import os
import shutil

from .checkpoint import latest_checkpoint, load_checkpoint
from .tokenizer import BPETokenizer, ByteTokenizer

CKPT_DIR = "ckpt"
TOKENIZER_FILE = "tokenizer.model"
METRICS_FILE = "metrics.jsonl"
# every entry `minillm train` writes into a run folder (and nothing else): what --fresh may delete
RUN_ENTRIES = (CKPT_DIR, TOKENIZER_FILE, METRICS_FILE, "train.bin", "val.bin", "data", "loss.png",
               "tokenizer_cache")


def clear_run(run_dir):
    """Delete what `minillm train` wrote in run_dir (RUN_ENTRIES), for a fresh start. Refuses with
    ValueError, deleting nothing, when run_dir holds anything else: it is not (only) a run folder.
    Returns the names deleted."""
    if not os.path.exists(run_dir):
        return []
    if not os.path.isdir(run_dir):
        raise ValueError(f"--out: {run_dir} is a file, expected a run folder")
    names = sorted(os.listdir(run_dir))
    foreign = [n for n in names if n not in RUN_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(f"--fresh: {run_dir} holds files `minillm train` did not write ({shown}); "
                         f"refusing to clear it: pick an empty or new --out folder")
    for n in names:
        path = os.path.join(run_dir, n)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return names


def checkpoint_dir(run_dir):
    """Folder of the run's checkpoints (RUN/ckpt)."""
    return os.path.join(run_dir, CKPT_DIR)


def tokenizer_path(run_dir):
    """The run's tokenizer file (RUN/tokenizer.model)."""
    return os.path.join(run_dir, TOKENIZER_FILE)


def metrics_path(run_dir):
    """The run's per-step metrics (RUN/metrics.jsonl)."""
    return os.path.join(run_dir, METRICS_FILE)


def read_run_metrics(run_dir):
    """The run's metrics.jsonl as a list of dicts (steps, evals, rollback events), in order; a last
    line cut short by a kill ends the list. [] when the run has none yet."""
    path = metrics_path(run_dir)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def latest_run_checkpoint(run_dir):
    """Path of the run's newest checkpoint, or None if it has none yet."""
    ckpt_dir = checkpoint_dir(run_dir)
    return latest_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None


def load_run_tokenizer(run_dir):
    """The tokenizer `minillm train` used for run_dir (BPE file, or the byte fallback)."""
    path = tokenizer_path(run_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir}: no {TOKENIZER_FILE} (was it written by `minillm train`?)")
    if ByteTokenizer.is_file(path):
        return ByteTokenizer()
    return BPETokenizer.load(path)


def load_run_model(run_dir, arg="run_dir"):
    """The Transformer of the run's newest checkpoint; ValueError naming `arg` if there is none."""
    path = latest_run_checkpoint(run_dir)
    if path is None:
        raise ValueError(f"{arg}: {run_dir} has no checkpoint in {checkpoint_dir(run_dir)}; run "
                         f"`minillm train --out {run_dir}` first")
    return load_checkpoint(path)[0]


def load_run(run_dir, arg="run_dir"):
    """(model, tokenizer) of a `minillm train` run folder, or ValueError naming `arg` (the caller's
    name for the folder, e.g. "--run") and saying what is missing."""
    model = load_run_model(run_dir, arg)
    try:
        tokenizer = load_run_tokenizer(run_dir)
    except FileNotFoundError as e:
        raise ValueError(f"{arg}: {e}; run `minillm train --out {run_dir}` first") from None
    return model, tokenizer
