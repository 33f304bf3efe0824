"""The Ray executor: the pipeline's per-shard work as Ray tasks (Moritz et al. 2018, "Ray: A
Distributed Framework for Emerging AI Applications"), so one TOML runs on a cluster as it runs on
one host (`[run] executor = "ray"`, or `minillm data run --executor ray [--ray-address HOST:PORT]`).

Two kinds of task, both plain functions of files:
  run_shard       one (shard, segment): read, apply the segment's stages, write output + stats
                  (pipeline.py; the same function the local process pool runs)
  observe_shard   a global stage's first pass over one shard, on a copy of the stage: MinHash
                  signatures, SimHash fingerprints or exact-text hashes of the shard's documents
                  (GlobalStage.observe_shard in stages.py)

Deduplication stays global: the driver absorbs the per-shard summaries in shard order, so the
LSH buckets (or the hash set) span every shard, union-find forms clusters across shards, and one
keep/drop decision per cluster is made once; only then do the apply tasks run. The output is the
local executor's, document for document. Accounting, progress and resume are the pipeline's own:
a task writes its stats file after its output shard, and a finalised stage is stored once.

Tasks read and write the pipeline's paths, so on a multi-node cluster the input and output folders
must be on a file system every node mounts, and minillm must be installed on every node.
"""
from .documents import read_documents

EXECUTORS = ("local", "ray")


def _ray():
    try:  # optional dependency: imported where used
        import ray
    except ImportError:
        raise ImportError("the Ray executor needs ray: pip install minillm[web]") from None
    return ray


def observe_shard(stage, shard_index, path, text_unit):
    """Task body: a global stage's summary of one shard (see GlobalStage.observe_shard)."""
    return stage.observe_shard(shard_index, read_documents(path, text_unit))


class RayExecutor:
    """address: a running cluster ("auto", "host:port", "ray://host:port") or None to start a
    local Ray on first use. An already initialised Ray (ray.init in the caller) is used as is."""

    def __init__(self, address=None, workers=None):
        self.address, self.workers = address, workers

    def _connect(self):
        ray = _ray()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        return ray

    def _gather(self, ray, refs, phase, progress):
        """Results in submission order; progress as tasks finish, in any order."""
        if progress:
            progress(phase, 0, len(refs))
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)                                # re-raises a task's exception here
            done += len(ready)
            if progress:
                progress(phase, done, len(refs))
        return ray.get(list(refs))

    def run(self, fn, tasks, phase, progress):
        """Run fn(*task) for every task as a Ray task; -> their results in task order."""
        ray = self._connect()
        remote = ray.remote(num_cpus=1)(fn)
        return self._gather(ray, [remote.remote(*t) for t in tasks], phase, progress)

    def observe(self, stage, paths, text_unit, progress):
        """The observe pass of a global stage: one task per shard, absorbed in shard order."""
        ray = self._connect()
        remote = ray.remote(num_cpus=1)(observe_shard)
        stage_ref = ray.put(stage)
        refs = [remote.remote(stage_ref, i, str(p), text_unit) for i, p in enumerate(paths)]
        for summary in self._gather(ray, refs, f"{stage.name}: observe", progress):
            stage.absorb(summary)
