"""metrics.jsonl: the machine-readable log of a training run, one JSON object per line.

Every optimizer step writes {"step", "loss", "grad_norm", "lr", "tokens", ...}; every evaluation
writes {"step", "eval_loss"}; a rollback writes {"event": "rollback", ...}. A resumed run first drops
the lines of steps after its checkpoint (it is about to redo them), so the file reads as one run.
"""
import json
import os

from .io.atomic import atomic_write


class MetricsLog:
    """Appends records to `path` (None: writes nothing, e.g. on ranks other than 0)."""

    def __init__(self, path, resume_step=0):
        self.path, self.f = path, None
        if path is None:
            return
        kept = []
        if resume_step > 0 and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break                    # a line cut short by a crash ends the usable log
                    if rec.get("step", 0) <= resume_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        with atomic_write(path, "w") as f:
            f.writelines(kept)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record):
        if self.f is not None:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
