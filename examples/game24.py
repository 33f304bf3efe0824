"""The Game of 24 by tree-of-thought search (Yao et al. 2023, Sec. 4.1), first with programmatic
thoughts and values, then with a small minillm model proposing the steps.

    python examples/game24.py            # ~2 minutes on 2 cores

Part 1 compares, on random solvable problems: ToT-BFS with breadth b = 1, 3, 5 under a cheap
heuristic value (exact only once two numbers are left), BFS and DFS with an exact value (an
oracle), and UCT MCTS with random rollouts -- success rate and how many states each evaluated.
Part 2 trains a byte-level model on step lines ("4 9 10 13: 13 - 9 = 4") taken from the
solutions of *other* problems, then runs ToT-BFS with the model in the loop two ways: the model
samples the candidate steps (ModelProposer; illegal or wrongly computed steps are parsed out), or
the model ranks the legal steps by likelihood and only its top n are expanded (against a random
ranking as the baseline). The heuristic value scores states in both.
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.reasoning import game24  # noqa: E402
from minillm.reasoning.lm import continuation_logprobs  # noqa: E402
from minillm.reasoning.tree_search import ModelProposer, bfs, dfs, mcts  # noqa: E402


def solvable_problems(n, rng):
    out = []
    while len(out) < n:
        p = game24.random_problems(1, rng)[0]
        if p not in out and game24.can_reach(game24.start(p).numbers):
            out.append(p)
    return out


def step_lines(problems):
    """Training text: one line per step of every integer-only solution path of each problem."""
    lines = []
    for p in problems:
        res = dfs(game24.start(p), game24.propose, game24.oracle_value, threshold=0.5, max_depth=3)
        for leaf in res.solutions:
            state = game24.start(p)
            for step in leaf.steps:
                child = game24.parse_step(" " + step, state)
                if child is None:         # a fractional step: the text format keeps integers only
                    break
                lines.append(game24.step_text(state, child))
                state = child
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--train-problems", type=int, default=300)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    test = solvable_problems(args.problems, rng)
    solved_by = lambda res: res.best is not None and getattr(res.best, "solved", False)
    leaf_reward = lambda s: 1.0 if s.solved else 0.0

    print(f"Part 1: programmatic thoughts, {len(test)} random solvable problems")
    print(f"{'search':56s}{'solved':>8s}{'states evaluated':>18s}")
    searches = [(f"ToT-BFS b={b}, heuristic value", lambda s, b=b: bfs(s, game24.propose, game24.heuristic_value, b, 3))
                for b in (1, 3, 5)]
    searches += [("ToT-BFS b=1, oracle value", lambda s: bfs(s, game24.propose, game24.oracle_value, 1, 3)),
                 ("ToT-DFS threshold 0.5, oracle value, first hit",
                  lambda s: dfs(s, game24.propose, game24.oracle_value, 0.5, 3, max_solutions=1)),
                 ("BFS full width (exhaustive)", lambda s: bfs(s, game24.propose, leaf_reward, None, 3)),
                 ("MCTS, 300 simulations, random rollouts",
                  lambda s: mcts(s, game24.propose, leaf_reward, 300, c=1.0, rollout=True,
                                 rng=np.random.default_rng(1)))]
    for name, search in searches:
        results = [search(game24.start(p)) for p in test]
        if name.startswith("MCTS"):   # MCTS's answer: follow the most visited children to a leaf
            ok = 0
            for r in results:
                node = r.root
                while node.children:
                    node = max(node.children, key=lambda ch: (ch.N, ch.Q))
                ok += bool(node.state.solved)
        else:
            ok = sum(solved_by(r) for r in results)
        print(f"{name:56s}{ok:>5d}/{len(test):<3d}{np.mean([r.evaluated for r in results]):>16.0f}")

    print("\nPart 2: a minillm model proposes the steps")
    train_problems = [p for p in solvable_problems(args.train_problems + len(test), np.random.default_rng(1))
                      if p not in test][:args.train_problems]
    lines = step_lines(train_problems)
    rng.shuffle(lines)
    text = "".join(lines)
    from minillm.io import write_tokens
    from minillm.tokenizer import ByteTokenizer
    from minillm.train import TrainConfig, train
    tok = ByteTokenizer()
    cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=3, n_head=4, n_kv_head=2, d_model=96, max_seq_len=64)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "steps.bin")
        write_tokens(path, np.asarray(tok.encode(text), dtype=np.int64), 256)
        tc = TrainConfig(train_data=path, out_dir=os.path.join(tmp, "ckpt"), batch_size=16, seq_len=64,
                         max_steps=args.steps, lr=3e-3, min_lr=3e-4, warmup_steps=20, ckpt_interval=10**9,
                         log_interval=10**9, spike_z=50.0)
        ts = time.perf_counter()
        model, hist = train(Transformer(cfg, seed=0), tc, log=lambda m: None, resume=False)
    print(f"trained on {len(lines):,} step lines ({len(text):,} bytes) from {len(train_problems)} other problems: "
          f"{args.steps} steps, final loss {hist[-1]['loss']:.3f} ({time.perf_counter() - ts:.0f} s)")
    newline = tok.encode("\n")[0]
    print(f"{'search (value: heuristic)':56s}{'solved':>8s}{'legal samples':>16s}")
    for n_samples, breadth in ((8, 3), (16, 5)):
        proposer = ModelProposer(model, tok, game24.prompt, game24.parse_step, n=n_samples, max_new_tokens=16,
                                 temperature=0.8, seed=0, stop=newline)
        legal = total = ok = 0
        for p in test:
            def propose(state):   # count how many samples parse into legal, correct steps
                nonlocal legal, total
                kids = proposer(state)
                legal, total = legal + len(kids), total + n_samples
                return kids
            ok += solved_by(bfs(game24.start(p), propose, game24.heuristic_value, breadth, 3))
        print(f"{f'BFS b={breadth}, model samples {n_samples} steps per state':56s}{ok:>5d}/{len(test):<3d}"
              f"{legal / total:>15.0%}")

    # The model as a proposal prior instead: the legal steps, ranked by the model's mean
    # log-likelihood of " a op b = c" after the prompt; only the top n are expanded.
    def ranked(n, score):
        return lambda state: sorted(game24.propose(state), key=score(state), reverse=True)[:n]

    def by_model(state):
        ctx = tok.encode(game24.prompt(state))
        return lambda child: float(continuation_logprobs(model, ctx, tok.encode(" " + child.steps[-1] + "\n")).mean())

    def at_random(state):
        r = np.random.default_rng(abs(hash(state.numbers)) % 2**32)
        return lambda child: float(r.random())

    for n in (3, 6):
        for name, score in (("model likelihood", by_model), ("random order (baseline)", at_random)):
            ok = sum(solved_by(bfs(game24.start(p), ranked(n, score), game24.heuristic_value, 3, 3)) for p in test)
            print(f"{f'BFS b=3, top {n} legal steps by {name}':56s}{ok:>5d}/{len(test):<3d}")
    print(f"(legal samples: distinct legal, correctly computed steps per sample drawn)\n\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
