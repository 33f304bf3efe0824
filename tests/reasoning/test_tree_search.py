"""Tree of thoughts (reasoning/tree_search.py) and the Game of 24 (game24.py): exhaustive BFS finds
known optima, DFS with threshold 0 enumerates every leaf exactly once, and MCTS visit counts
concentrate on the best move as the budget grows."""
import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.reasoning import game24
from minillm.reasoning.tree_search import bfs, dfs, mcts


# ------------------------------------------------------------------ random trees with known answers
def random_tree(rng, depth, max_branch):
    """{path tuple: children paths}, {path: value}; leaves carry rewards, inner nodes noisy
    non-negative guesses. Depth varies by branch (some leaves are shallow)."""
    children, value = {(): []}, {(): 0.0}
    stack = [()]
    while stack:
        node = stack.pop()
        if len(node) == depth or (node and rng.random() < 0.2):
            children[node] = []
            value[node] = float(rng.integers(0, 100))
            continue
        kids = [node + (i,) for i in range(int(rng.integers(1, max_branch + 1)))]
        children[node] = kids
        for k in kids:
            value[k] = float(rng.random())        # an uninformative heuristic
            stack.append(k)
    for node, kids in children.items():
        if not kids:
            value[node] = float(rng.integers(0, 100))
    return children, value


tree_st = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4))


@settings(max_examples=80, deadline=None)
@given(spec=tree_st)
def test_bfs_full_width_finds_the_optimum(spec):
    seed, depth, branch = spec
    children, value = random_tree(np.random.default_rng(seed), depth, branch)
    leaves = [n for n, k in children.items() if not k and n != ()]
    if not leaves:
        return
    res = bfs((), children.__getitem__, value.__getitem__, breadth=None, max_depth=depth)
    assert res.value == max(value[l] for l in leaves)
    assert sorted(res.solutions) == sorted(leaves)


@settings(max_examples=80, deadline=None)
@given(spec=tree_st, threshold=st.sampled_from([0.0, 0.3, 0.7]))
def test_dfs_enumerates_exactly_and_prunes_exactly(spec, threshold):
    seed, depth, branch = spec
    children, value = random_tree(np.random.default_rng(seed), depth, branch)
    res = dfs((), children.__getitem__, value.__getitem__, threshold=threshold, max_depth=depth)
    # expected: the leaves whose every ancestor (and themselves) score >= threshold
    expected = [n for n, k in children.items() if not k and n != ()
                and all(value[n[:i]] >= threshold for i in range(1, len(n) + 1))]
    assert len(res.solutions) == len(set(res.solutions))          # each leaf at most once
    assert sorted(res.solutions) == sorted(expected)
    if threshold == 0.0:                                           # all values >= 0: nothing pruned
        assert len(res.solutions) == sum(1 for n, k in children.items() if not k and n != ())


def test_dfs_visits_best_first_and_stops():
    children = {(): [(0,), (1,)], (0,): [(0, 0), (0, 1)], (1,): [(1, 0)], (0, 0): [], (0, 1): [], (1, 0): []}
    value = {(0,): 0.2, (1,): 0.9, (0, 0): 1.0, (0, 1): 5.0, (1, 0): 3.0}
    res = dfs((), children.__getitem__, value.__getitem__, threshold=0.0)
    assert res.solutions == [(1, 0), (0, 1), (0, 0)]
    res = dfs((), children.__getitem__, value.__getitem__, threshold=0.0, max_solutions=2)
    assert res.solutions == [(1, 0), (0, 1)] and res.best == (0, 1)


# ------------------------------------------------------------------ MCTS
TRAP = {  # move "a" hides the best leaf among bad ones; "b" is uniformly decent; "c" is poor
    (): ["a", "b", "c"],
    "a": ["a1", "a2", "a3", "a4"], "b": ["b1", "b2", "b3", "b4"], "c": ["c1", "c2"],
}
TRAP_REWARD = {"a1": 0.0, "a2": 0.1, "a3": 1.0, "a4": 0.0, "b1": 0.6, "b2": 0.6, "b3": 0.6, "b4": 0.6,
               "c1": 0.2, "c2": 0.3}


def visit_share(res, move):
    ch = {c.state: c.N for c in res.root.children}
    return ch[move] / sum(ch.values())


@pytest.mark.parametrize("rollout", [False, True])
def test_mcts_visits_concentrate_on_the_best_move(rollout):
    propose = lambda s: TRAP.get(s, [])
    evaluate = lambda s: TRAP_REWARD.get(s, 0.0)   # inner nodes: no information (0)
    shares = []
    for budget in (20, 200, 2000, 20000):
        share = np.mean([visit_share(mcts((), propose, evaluate, budget, c=0.5, rollout=rollout,
                                          rng=np.random.default_rng(seed)), "a") for seed in range(3)])
        shares.append(share)
    # early on the averages favour the steady "b"; with more simulations UCT finds "a"'s leaf
    assert shares[0] < 0.5 and all(x < y for x, y in zip(shares, shares[1:])) and shares[-1] > 0.9, shares
    res = mcts((), propose, evaluate, 20000, c=0.5, rollout=rollout)
    assert res.best == "a"


def minimax_tree(rng, depth, branch):
    children, reward = {}, {}

    def build(node, d):
        if d == depth:
            children[node] = []
            reward[node] = float(rng.uniform(-1, 1))   # value for the player who moved into node
            return
        children[node] = [node + (i,) for i in range(branch)]
        for k in children[node]:
            build(k, d + 1)
    build((), 0)

    def negamax(node):  # value for the player who moved into node
        if not children[node]:
            return reward[node]
        return -max(negamax(k) for k in children[node])
    return children, reward, {k: negamax(k) for k in children[()]}


@pytest.mark.parametrize("seed", range(4))
def test_mcts_negamax_finds_the_minimax_move(seed):
    children, reward, root_values = minimax_tree(np.random.default_rng(seed), depth=3, branch=3)
    best = max(root_values, key=root_values.get)
    if sorted(root_values.values())[-2] > root_values[best] - 0.05:
        pytest.skip("near tie between the two best moves")
    res = mcts((), children.__getitem__, lambda s: reward.get(s, 0.0), 6000, c=1.0, rollout=True,
               negamax=True, rng=np.random.default_rng(seed))
    assert res.best == best
    assert visit_share(res, best) > 0.5


def test_bad_arguments():
    with pytest.raises(TypeError, match="propose"):
        bfs((), None, lambda s: 0.0)
    with pytest.raises(ValueError, match="breadth"):
        bfs((), lambda s: [], lambda s: 0.0, breadth=0)
    with pytest.raises(ValueError, match="n_simulations"):
        mcts((), lambda s: [], lambda s: 0.0, 0)


# ------------------------------------------------------------------ Game of 24
def brute_force_values(numbers):
    """Every value of every expression over the four numbers (each once), independent of
    game24.propose: permutations x operators x the five binary-tree shapes."""
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: None if b == 0 else a / b}

    def f(op, a, b):
        return None if a is None or b is None else ops[op](a, b)
    out = set()
    for a, b, c, d in itertools.permutations([Fraction(n) for n in numbers]):
        for o1, o2, o3 in itertools.product(ops, repeat=3):
            for v in (f(o3, f(o2, f(o1, a, b), c), d), f(o3, f(o1, a, b), f(o2, c, d)),
                      f(o3, f(o2, a, f(o1, b, c)), d), f(o3, a, f(o2, f(o1, b, c), d)),
                      f(o3, a, f(o2, b, f(o1, c, d)))):
                if v is not None:
                    out.add(v)
    return out


def evaluate_expression(expr):
    return eval(__import__("re").sub(r"(\d+)", r"Fraction(\1)", expr), {"Fraction": Fraction})


PROBLEMS = game24.random_problems(25, np.random.default_rng(24)) + [(1, 1, 1, 1), (3, 3, 8, 8), (4, 9, 10, 13)]


@pytest.mark.parametrize("numbers", PROBLEMS)
def test_game24_bfs_full_width_solves_exactly_the_solvable(numbers):
    solvable = 24 in brute_force_values(numbers)
    res = bfs(game24.start(numbers), game24.propose, lambda s: 1.0 if s.solved else 0.0, breadth=None, max_depth=3)
    assert res.best.solved == solvable
    if solvable:
        assert evaluate_expression(res.best.expression) == 24 and len(res.best.steps) == 3
    assert game24.can_reach(game24.start(numbers).numbers) == solvable


@pytest.mark.parametrize("numbers", PROBLEMS[:6])
def test_game24_dfs_threshold_0_enumerates_every_value(numbers):
    res = dfs(game24.start(numbers), game24.propose, lambda s: 0.0, threshold=0.0, max_depth=3)
    assert {s.numbers[0] for s in res.solutions} == brute_force_values(numbers)


def test_game24_oracle_guided_search_and_text():
    s = game24.start([4, 9, 10, 13])
    res = bfs(s, game24.propose, game24.oracle_value, breadth=1, max_depth=3)
    assert res.best.solved and evaluate_expression(res.best.expression) == 24
    res = dfs(s, game24.propose, game24.oracle_value, threshold=0.5, max_depth=3, max_solutions=1)
    assert res.best.solved and res.expanded == 3          # the oracle never lets DFS backtrack
    child = game24.parse_step(" 13 - 9 = 4\n", s)
    assert child.numbers == (4, 4, 10) and child.steps == ("13 - 9 = 4",)
    assert game24.step_text(s, child) == "4 9 10 13: 13 - 9 = 4\n"
    for bad in (" 13 - 9 = 5", " 13 - 13 = 0", " 7 + 1 = 8", "hello"):
        assert game24.parse_step(bad, s) is None
    with pytest.raises(ValueError, match="numbers"):
        game24.start([1.5, 2, 3, 4])


def test_model_in_the_loop_pieces():
    from minillm.model import ModelConfig, Transformer
    from minillm.reasoning.lm import continuation_logprobs
    from minillm.reasoning.tree_search import LikelihoodEvaluator, ModelProposer, ValuePromptEvaluator
    from minillm.tokenizer import ByteTokenizer
    model, tok = Transformer(ModelConfig.preset("llama-tiny", max_seq_len=64), seed=0), ByteTokenizer()
    s = game24.start([1, 2, 3, 4])
    # the proposer keeps what parse accepts, merges duplicates, and is reproducible from its seed
    parse = lambda text, state: text[:1] if text else None
    kids = ModelProposer(model, tok, game24.prompt, parse, n=12, max_new_tokens=2, temperature=1.0, seed=3)(s)
    again = ModelProposer(model, tok, game24.prompt, parse, n=12, max_new_tokens=2, temperature=1.0, seed=3)(s)
    assert kids == again and len(kids) == len(set(kids)) >= 1
    # likelihood evaluator = mean log-prob of the continuation
    ev = LikelihoodEvaluator(model, tok, lambda st: (game24.prompt(st), " 1 + 2 = 3\n"))
    ref = continuation_logprobs(model, tok.encode(game24.prompt(s)), tok.encode(" 1 + 2 = 3\n")).mean()
    assert ev(s) == pytest.approx(ref)
    # value prompt: label probabilities renormalised, value their weighted score
    vp = ValuePromptEvaluator(model, tok, lambda st: game24.prompt(st) + " can reach 24?")
    probs = vp.label_probs(s)
    assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0) and np.all(probs > 0)
    assert vp(s) == pytest.approx(probs @ np.array([1.0, 0.5, 0.0]))
