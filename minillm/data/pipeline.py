"""The data pipeline: composable stages over a stream of documents, parallel over shards, with
per-stage statistics, exact accounting of every dropped document, and resume.

    pipeline = Pipeline([make_stage({"type": "language", "keep": ["en"]}), ...], workers=2)
    report = pipeline.run("corpus/", "out/")          # or: minillm data run pipeline.toml

Execution. The stage list is cut before every global stage (stages.py) into segments. Segment 0
runs the leading per-document stages on every input shard; segment k > 0 first lets its global
stage observe every document of segment k-1's output (in shard order, in the main process),
finalises it, then runs it and the following per-document stages per shard. Per-shard work runs in
`workers` processes (multiprocessing, spawn), or as Ray tasks with executor="ray" (ray_executor.py:
there the observe pass, too, runs per shard and the driver merges the summaries in shard order). The last segment writes <out>/shards/<shard>.jsonl.gz
(and the token files when the pipeline ends in a tokenize stage); earlier segments write to
<out>/_work/seg<k>/.

Accounting. For every shard and segment a stats file records, per stage, documents and bytes in and
out, drop counts by reason, extra counters (PII replaced, languages, tokens) and the id of every
dropped document. For each stage docs_in = docs_out + dropped; the next stage's docs_in is this
stage's docs_out; so input documents = output documents + Σ dropped, which tests/data checks.

Resume. A shard's stats file is written (atomically) only after its output shard, so its existence
means "done"; a finalised global stage's state is saved as JSON to <out>/_work/seg<k>.stage.json
(Stage.state; never pickle, so a file in the output folder cannot run code when read). Re-running the
same pipeline skips both. A changed pipeline description refuses to resume into the same folder.
"""
import concurrent.futures
import hashlib
import json
import multiprocessing
import pathlib
import tomllib
from collections import Counter
from dataclasses import dataclass, field

from ..io.atomic import atomic_write
from .documents import TEXT_UNITS, list_shards, read_documents, shard_stem, write_jsonl
from .ray_executor import EXECUTORS, RayExecutor
from .stages import Stage, make_stage

RESOURCES = pathlib.Path(__file__).parent / "resources"
DEFAULT_PIPELINE = RESOURCES / "default_pipeline.toml"


@dataclass
class StageStats:
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: Counter = field(default_factory=Counter)   # reason -> documents
    counters: Counter = field(default_factory=Counter)  # stage-specific counts (pii_email, ...)

    def count(self, key, n=1):
        self.counters[key] += n

    def merge(self, other):
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.dropped.update(other.dropped)
        self.counters.update(other.counters)

    def to_json(self):
        return {"docs_in": self.docs_in, "docs_out": self.docs_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "dropped": dict(self.dropped),
                "counters": dict(self.counters)}

    @classmethod
    def from_json(cls, d):
        return cls(d["docs_in"], d["docs_out"], d["bytes_in"], d["bytes_out"],
                   Counter(d["dropped"]), Counter(d["counters"]))


def _nbytes(doc):
    return len(doc["text"].encode("utf-8"))


def run_shard(stages, in_path, text_unit, out_path, stats_path, shard_name, shard_index, out_dir):
    """Stream one shard through `stages` (the first may be a finalised global stage) and write
    its output and stats. Top-level so worker processes can run it. -> the stats dict."""
    stats = {s.name: StageStats() for s in stages}
    dropped_ids, skipped = [], Counter()          # skipped: input records no reader turned into a doc
    for s in stages:
        s.start_shard(shard_name, out_dir)

    def survivors():
        for pos, doc in enumerate(read_documents(in_path, text_unit, skipped)):
            for s in stages:
                st = stats[s.name]
                st.docs_in += 1
                st.bytes_in += _nbytes(doc)
                out = s.apply_at((shard_index, pos), doc, st) if s.is_global else s.apply(doc, st)
                if isinstance(out, str):
                    st.dropped[out] += 1
                    dropped_ids.append([doc["id"], s.name, out])
                    break
                doc = out
                st.docs_out += 1
                st.bytes_out += _nbytes(doc)
            else:
                yield doc

    n_out, _ = write_jsonl(out_path, survivors())
    for s in stages:
        s.end_shard()
    record = {"shard": shard_name, "input": str(in_path), "output": str(out_path), "docs_out": n_out,
              "stages": {name: st.to_json() for name, st in stats.items()}, "dropped": dropped_ids,
              "input_skipped": dict(skipped)}
    with atomic_write(stats_path, "w") as f:
        json.dump(record, f)
    return record


def _run_task(args):
    return run_shard(*args)


@dataclass
class Report:
    """What a run did: per-stage totals in pipeline order, plus global-stage summaries."""
    stages: dict          # name -> StageStats (summed over shards)
    docs_in: int
    docs_out: int
    summaries: dict       # name -> dict from Stage.summary()
    dropped: list         # [id, stage, reason] for every dropped document
    tasks_run: int        # (shard, segment) tasks run in this invocation; resumed ones excluded
    tasks_total: int
    out_dir: str
    input_skipped: Counter = field(default_factory=Counter)  # reason -> WARC records not read

    def table(self):
        """Rows of a per-stage summary: (name, docs_in, docs_out, MB in, MB out, top drop reasons)."""
        rows = []
        for name, st in self.stages.items():
            reasons = ", ".join(f"{r} {n}" for r, n in st.dropped.most_common(4))
            rows.append((name, st.docs_in, st.docs_out, st.bytes_in / 1e6, st.bytes_out / 1e6, reasons))
        return rows


class Pipeline:
    """stages: list of Stage objects (or dicts accepted by make_stage). workers: processes for the
    per-shard work (1 = in this process). text_unit: how .txt shards split into documents.
    executor: "local" (this host's process pool) or "ray" (Ray tasks, ray_executor.py, on the
    cluster at ray_address, or a local Ray started on first use when None)."""

    def __init__(self, stages, workers=1, text_unit="file", description=None, executor="local",
                 ray_address=None):
        self.stages = [s if isinstance(s, Stage) else make_stage(s) for s in stages]
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"stages: names must be unique, repeated: {sorted(dup)} (set `name`)")
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected a positive int, got {workers!r}")
        if text_unit not in TEXT_UNITS:
            raise ValueError(f"text_unit: expected one of {TEXT_UNITS}, got {text_unit!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor: expected one of {EXECUTORS}, got {executor!r}")
        self.workers, self.text_unit = workers, text_unit
        self.executor = RayExecutor(ray_address, workers) if executor == "ray" else None
        self.description = description if description is not None else repr(
            [(type(s).__name__, s.name) for s in self.stages])

    def segments(self):
        """[[stages...], ...]: a new segment starts at every global stage."""
        segs = [[]]
        for s in self.stages:
            if s.is_global and segs[-1]:
                segs.append([])
            segs[-1].append(s)
        return segs

    def run(self, inputs, out_dir, progress=None):
        """Run over a shard file or folder; resume whatever a previous identical run finished.
        progress(phase: str, done: int, total: int) is called as shards complete. -> Report."""
        out = pathlib.Path(out_dir)
        work = out / "_work"
        work.mkdir(parents=True, exist_ok=True)
        self._check_resume(work, inputs)
        shards = list_shards(inputs)
        names = [f"{i:05d}-{shard_stem(p)}" for i, p in enumerate(shards)]
        paths, unit = shards, self.text_unit
        segments = self.segments()
        tasks_run = 0
        all_records = []
        self._pool = None                          # started on first need, shared by all segments
        try:
            for k, seg in enumerate(segments):
                last = k == len(segments) - 1
                seg_dir = out / "shards" if last else work / f"seg{k}"
                if seg[0].is_global:
                    seg[0] = self._finalized(seg[0], k, paths, unit, work, progress)
                    idx = self.stages.index(next(s for s in self.stages if s.name == seg[0].name))
                    self.stages[idx] = seg[0]
                outs = [seg_dir / f"{n}.jsonl.gz" for n in names]
                stats = [work / f"seg{k}" / f"{n}.stats.json" for n in names]
                todo = [i for i in range(len(shards)) if not stats[i].exists()]
                tasks = [(seg, paths[i], unit, outs[i], stats[i], names[i], i, out) for i in todo]
                tasks_run += len(tasks)
                self._execute(tasks, f"segment {k + 1}/{len(segments)}", progress)
                all_records.extend(json.loads(p.read_text()) for p in stats)
                paths, unit = outs, "file"
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
        for s in self.stages:
            s.close(out)
        return self._report(all_records, len(shards) * len(segments), tasks_run, out)

    def _check_resume(self, work, inputs):
        digest = hashlib.sha256((self.description + "\x00" + str(inputs)).encode()).hexdigest()
        marker = work / "pipeline.sha256"
        if marker.exists() and marker.read_text().strip() != digest:
            raise ValueError(f"out_dir: {work.parent} holds a run of a different pipeline or input; "
                             f"use a new output folder (or delete it) to start over")
        with atomic_write(marker, "w") as f:
            f.write(digest)

    def _finalized(self, stage, k, paths, unit, work, progress):
        state = work / f"seg{k}.stage.json"
        if state.exists():
            try:
                data = json.loads(state.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as e:
                raise ValueError(f"{state}: not a stage state file ({type(e).__name__}: {e}); "
                                 f"delete it to recompute the stage") from None
            stage.load_state(data)
            return stage
        if self.executor is not None:
            self.executor.observe(stage, paths, unit, progress)
        else:
            for i, p in enumerate(paths):
                for pos, doc in enumerate(read_documents(p, unit)):
                    stage.observe((i, pos), doc)
                if progress:
                    progress(f"{stage.name}: observe", i + 1, len(paths))
        stage.finalize(work)
        with atomic_write(state, "w") as f:
            json.dump(stage.state(), f, ensure_ascii=False)
        return stage

    def _execute(self, tasks, phase, progress):
        if self.executor is not None:
            return self.executor.run(run_shard, tasks, phase, progress)
        if progress:
            progress(phase, 0, len(tasks))
        if self.workers == 1 or len(tasks) <= 1:
            for n, t in enumerate(tasks, 1):
                run_shard(*t)
                if progress:
                    progress(phase, n, len(tasks))
            return
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # fork is unsafe with Numba's thread pools
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx)
        futures = [self._pool.submit(_run_task, t) for t in tasks]
        for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            fut.result()                           # re-raises a worker's exception here
            if progress:
                progress(phase, n, len(tasks))

    def _report(self, records, n_tasks, tasks_run, out):
        totals = {s.name: StageStats() for s in self.stages}
        dropped, skipped = [], Counter()
        for r in records:
            skipped.update(r.get("input_skipped", {}))
            for name, st in r["stages"].items():
                totals[name].merge(StageStats.from_json(st))
            dropped.extend(r["dropped"])
        first, last = self.stages[0].name, self.stages[-1].name
        report = Report(totals, totals[first].docs_in, totals[last].docs_out,
                        {s.name: s.summary() for s in self.stages}, dropped, tasks_run,
                        n_tasks, str(out), skipped)
        with atomic_write(out / "report.json", "w") as f:
            json.dump({"docs_in": report.docs_in, "docs_out": report.docs_out,
                       "stages": {k: v.to_json() for k, v in totals.items()},
                       "summaries": report.summaries, "input_skipped": dict(skipped)},
                      f, indent=1, default=str)
        return report


# --- TOML ----------------------------------------------------------------------------------------

def load_config(path):
    """Read a pipeline TOML file: [input] path, text_unit; [output] path; [run] workers;
    [[stage]] tables. Relative paths are resolved against the TOML file's folder."""
    path = pathlib.Path(path)
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML ({e})") from e
    unknown = set(cfg) - {"input", "output", "run", "stage"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)} "
                         f"(expected [input], [output], [run], [[stage]])")
    if not cfg.get("stage"):
        raise ValueError(f"{path}: no [[stage]] tables")
    base = path.parent
    for section in ("input", "output"):
        if "path" in cfg.get(section, {}):
            cfg[section]["path"] = str((base / cfg[section]["path"]).resolve())
    cfg["description"] = json.dumps(cfg["stage"], sort_keys=True)
    return cfg


def pipeline_from_config(cfg, workers=None, executor=None, ray_address=None):
    """-> (Pipeline, input path or None, output path or None) from a load_config dict; the
    arguments, when given, override [run] workers / executor / ray_address."""
    run = cfg.get("run", {})
    pipe = Pipeline([make_stage(s) for s in cfg["stage"]],
                    workers=workers or int(run.get("workers", 1)),
                    text_unit=cfg.get("input", {}).get("text_unit", "file"),
                    description=cfg.get("description"),
                    executor=executor or run.get("executor", "local"),
                    ray_address=ray_address or run.get("ray_address"))
    return pipe, cfg.get("input", {}).get("path"), cfg.get("output", {}).get("path")


def default_pipeline(workers=1):
    """The shipped pipeline (resources/default_pipeline.toml) mirroring the four textbook stages:
    quality filtering, deduplication, PII removal, toxicity/safety -- then tokenization."""
    return pipeline_from_config(load_config(DEFAULT_PIPELINE), workers)[0]
