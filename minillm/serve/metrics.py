"""Server metrics in the Prometheus text exposition format (version 0.0.4): counters, gauges and
cumulative histograms, written by hand (a few lines; no client library needed).

The engine thread records, the HTTP thread renders: every method takes the one lock.
  histogram: name_bucket{le="b"} = observations <= b (cumulative, ending with le="+Inf"),
             name_sum and name_count; quantiles are estimated by the scraper (histogram_quantile).
"""
import threading

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                   2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)      # last slot: above the largest bound
        self.sum = 0.0
        self.count = 0

    def observe(self, v):
        i = next((k for k, b in enumerate(self.buckets) if v <= b), len(self.buckets))
        self.counts[i] += 1
        self.sum += v
        self.count += 1

    def lines(self, name):
        out, cum = [], 0
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{le="{b}"}} {cum}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out += [f"{name}_sum {self.sum!r}", f"{name}_count {self.count}"]
        return out


# name -> (type, help); the order here is the order of the page
METRICS = {
    "minillm_requests_running": ("gauge", "Requests in the running batch."),
    "minillm_requests_waiting": ("gauge", "Requests admitted but waiting for the running batch (incl. swapped out)."),
    "minillm_kv_cache_usage": ("gauge", "Fraction of KV-cache blocks in use (0..1)."),
    "minillm_prefix_cache_hit_rate": ("gauge", "Prompt blocks found in the prefix cache / blocks looked up."),
    "minillm_prompt_tokens_total": ("counter", "Prompt tokens of the requests admitted."),
    "minillm_generation_tokens_total": ("counter", "Tokens generated."),
    "minillm_requests_finished_total": ("counter", "Requests finished, by finish reason."),
    "minillm_requests_rejected_total": ("counter", "Requests refused with 429 because the queue was full."),
    "minillm_engine_steps_total": ("counter", "Engine steps (one batched forward each)."),
    "minillm_time_to_first_token_seconds": ("histogram", "Time from arrival to the first generated token."),
    "minillm_inter_token_latency_seconds": ("histogram", "Time between consecutive tokens of one sequence."),
    "minillm_request_latency_seconds": ("histogram", "Time from arrival to the last token."),
}


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {n: 0 for n, (kind, _) in METRICS.items() if kind != "histogram"}
        self.values["minillm_requests_finished_total"] = {}
        self.histograms = {n: Histogram() for n, (kind, _) in METRICS.items() if kind == "histogram"}

    def set(self, name, value):
        with self.lock:
            self.values[name] = value

    def inc(self, name, by=1, label=None):
        with self.lock:
            if label is None:
                self.values[name] += by
            else:
                d = self.values[name]
                d[label] = d.get(label, 0) + by

    def observe(self, name, value):
        with self.lock:
            self.histograms[name].observe(value)

    def get(self, name):
        with self.lock:
            return self.values[name]

    def render(self):  # -> str, text/plain; version=0.0.4
        out = []
        with self.lock:
            for name, (kind, help_) in METRICS.items():
                out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
                if kind == "histogram":
                    out += self.histograms[name].lines(name)
                elif isinstance(self.values[name], dict):
                    out += [f'{name}{{finish_reason="{k}"}} {v}' for k, v in sorted(self.values[name].items())]
                else:
                    out.append(f"{name} {self.values[name]!r}")
        return "\n".join(out) + "\n"
