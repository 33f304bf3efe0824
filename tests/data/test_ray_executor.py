"""The Ray executor: same output as the local executor, dedup across shards (near-duplicates and
exact copies planted in different shards are removed), accounting, resume. Ray starts once for
the module, with 2 CPUs."""
import gzip
import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install minillm[web])")

from minillm.data import Pipeline, load_config, pipeline_from_config, write_jsonl  # noqa: E402

WORDS = ("river valley farmers stone houses water spring fields children weather clouds traders "
         "coast salt cloth cities village market school garden museum train station bridge "
         "harbour forest mill bakery library").split()
STAGES = [{"type": "length", "min_length": 20},
          {"type": "exact_dedup"},
          {"type": "minhash_dedup", "threshold": 0.7, "num_perm": 64, "ngram": 3},
          {"type": "pii"},
          {"type": "simhash_dedup", "max_distance": 3}]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def make_corpus(folder):
    """4 shards x 6 documents; planted across shards: an exact copy (shard 0 -> 2), two
    near-duplicates (one word changed: 0 -> 3, 1 -> 2), a too-short document, an e-mail."""
    rng = np.random.default_rng(1)
    docs = [" ".join(rng.choice(WORDS, 60)) + "." for _ in range(24)]
    docs[14] = docs[2]
    docs[20] = docs[3].replace(docs[3].split()[10], "lighthouse", 1)
    docs[15] = docs[7].replace(docs[7].split()[30], "lighthouse", 1)
    docs[9] = "Too short."
    docs[11] += " Mail jane.doe@example.com now."
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(4):
        write_jsonl(folder / f"part{s}.jsonl.gz",
                    [{"id": f"d{i}", "text": docs[i], "meta": {}} for i in range(6 * s, 6 * s + 6)])


def read_out(out):
    shards = sorted((out / "shards").glob("*.jsonl.gz"))
    return [[json.loads(ln) for ln in gzip.open(p, "rt", encoding="utf-8")] for p in shards]


def test_ray_output_equals_local_and_dedups_across_shards(tmp_path):
    make_corpus(tmp_path / "in")
    local = Pipeline(STAGES).run(tmp_path / "in", tmp_path / "local")
    phases = []
    distributed = Pipeline(STAGES, executor="ray").run(
        tmp_path / "in", tmp_path / "ray", progress=lambda ph, done, total: phases.append(ph))
    a, b = read_out(tmp_path / "local"), read_out(tmp_path / "ray")
    assert a == b                                                   # documents, in order
    kept = {d["id"] for shard in b for d in shard}
    assert {"d14", "d20", "d15", "d9"}.isdisjoint(kept)             # planted across shards: gone
    assert {"d2", "d3", "d7", "d11"} <= kept                        # the first of each is kept
    assert len(kept) == 20
    for name in local.stages:
        assert local.stages[name].to_json() == distributed.stages[name].to_json()
    assert sorted(map(tuple, local.dropped)) == sorted(map(tuple, distributed.dropped))
    assert distributed.docs_in == 24 == distributed.docs_out + len(distributed.dropped)
    assert any("observe" in ph for ph in phases) and any("segment" in ph for ph in phases)
    again = Pipeline(STAGES, executor="ray").run(tmp_path / "in", tmp_path / "ray")
    assert again.tasks_run == 0 and read_out(tmp_path / "ray") == b  # resumed: nothing re-run


def test_toml_and_arguments_select_the_executor(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('[run]\nexecutor = "ray"\n[[stage]]\ntype = "length"\nmin_length = 1\n')
    pipe, _, _ = pipeline_from_config(load_config(toml))
    assert pipe.executor is not None
    pipe, _, _ = pipeline_from_config(load_config(toml), executor="local")
    assert pipe.executor is None
    with pytest.raises(ValueError, match="executor"):
        Pipeline(STAGES, executor="spark")


def test_cli_runs_with_executor_ray(tmp_path, capsys):
    import argparse

    from minillm.cli.data import register
    make_corpus(tmp_path / "in")
    (tmp_path / "p.toml").write_text('[input]\npath = "in"\n[output]\npath = "out"\n'
                                     '[[stage]]\ntype = "exact_dedup"\n')
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "run", str(tmp_path / "p.toml"), "--quiet", "--executor", "ray"])
    assert args.func(args) == 0
    assert "24 in, 23 out" in capsys.readouterr().out          # the exact copy d14 is gone
    assert "d14" not in {d["id"] for shard in read_out(tmp_path / "out") for d in shard}
