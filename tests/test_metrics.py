"""metrics.jsonl: a resumed run drops the lines of the steps it redoes, and a torn last line."""
import json

from minillm.metrics import MetricsLog


def records(path):
    return [json.loads(line) for line in open(path)]


def test_metrics_log_drops_the_steps_a_resume_redoes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(str(path))
    for s in range(1, 6):
        log.write({"step": s, "loss": 1.0})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')                                     # cut short by a crash
    log = MetricsLog(str(path), resume_step=3)
    log.write({"step": 4, "loss": 0.5})
    log.close()
    assert [(r["step"], r["loss"]) for r in records(path)] == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 0.5)]
