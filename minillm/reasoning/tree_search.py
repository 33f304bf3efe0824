"""Tree of Thoughts (Yao et al. 2023, "Tree of Thoughts: Deliberate Problem Solving with Large
Language Models", Sec. 3 and Algorithms 1-2) and Monte Carlo tree search (Kocsis & Szepesvari
2006, UCT; the four phases as in Browne et al. 2012, "A Survey of MCTS Methods", Sec. 3.1).

A problem is three plain functions on states, so a Python program or a language model can play
any of the parts:
  propose(state)  -> list of child states (the "thought generator"); [] means a leaf
  evaluate(state) -> float, higher is better (the "state evaluator"; for leaves, the reward)
  is_terminal(state) -> bool (default: propose(state) == [])

  bfs   keep the b best states per depth (ToT-BFS, Alg. 1); b = None keeps all: exhaustive search
  dfs   expand the most promising child first, prune children valued below a threshold, backtrack
        (ToT-DFS, Alg. 2); threshold -inf (or 0 with values >= 0) visits every leaf exactly once
  mcts  UCT selection, expansion, evaluation (evaluate, or a random rollout to a leaf), and
        backpropagation of the value along the path; negamax=True for two-player games

ModelProposer / LikelihoodEvaluator / ValuePromptEvaluator put a minillm model behind the same
functions: sampling candidate thoughts, scoring by log-likelihood, or a value prompt whose answer
distribution ("sure" / "likely" / "impossible") gives an expected value (Yao et al., Sec. 3 (c)).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from ..nn.softmax import log_softmax
from .lm import continuation_logprobs, sample_continuations


@dataclass
class SearchResult:
    best: object                    # the best leaf found (or best state when no leaf was reached)
    value: float                    # evaluate(best)
    solutions: list = field(default_factory=list)   # leaves reached, in the order found
    expanded: int = 0               # propose() calls
    evaluated: int = 0              # evaluate() calls
    root: object = None             # mcts: the root Node with visit statistics


def _terminal_fn(propose, is_terminal):
    return is_terminal if is_terminal is not None else (lambda s: len(propose(s)) == 0)


def _check_callable(**fns):
    for name, f in fns.items():
        if not callable(f):
            raise TypeError(f"{name}: expected a callable, got {type(f).__name__}")


# ---------------------------------------------------------------------------------- BFS
def bfs(root, propose, evaluate, breadth=5, max_depth=10, is_terminal=None):
    """ToT-BFS (Yao et al. 2023, Alg. 1): S_t = top-b of {children of S_{t-1}} by evaluate.
    Leaves are set aside as solutions as they appear; the result's best is the highest-valued
    leaf (ties to the first found). breadth=None keeps every state: exhaustive breadth-first search."""
    _check_callable(propose=propose, evaluate=evaluate)
    if breadth is not None and (not isinstance(breadth, int) or breadth < 1):
        raise ValueError(f"breadth: expected a positive int or None, got {breadth!r}")
    terminal = _terminal_fn(propose, is_terminal)
    res = SearchResult(best=None, value=-math.inf)
    frontier = [root]
    best_state = (root, -math.inf)
    for _ in range(max_depth):
        candidates = []
        for s in frontier:
            res.expanded += 1
            for child in propose(s):
                v = float(evaluate(child))
                res.evaluated += 1
                if terminal(child):
                    res.solutions.append(child)
                    if v > res.value:
                        res.best, res.value = child, v
                else:
                    candidates.append((v, len(candidates), child))
                    if v > best_state[1]:
                        best_state = (child, v)
        if not candidates:
            break
        candidates.sort(key=lambda c: (-c[0], c[1]))       # best first, stable on ties
        frontier = [c for _, _, c in (candidates if breadth is None else candidates[:breadth])]
    if res.best is None:                                  # no leaf reached: report the best state seen
        res.best, res.value = best_state
    return res


# ---------------------------------------------------------------------------------- DFS
def dfs(root, propose, evaluate, threshold=0.0, max_depth=10, is_terminal=None, max_solutions=None):
    """ToT-DFS (Yao et al. 2023, Alg. 2): from each state visit the children best-first, skipping
    those with evaluate(child) < threshold (pruning), and backtrack when a subtree is exhausted.
    Stops after max_solutions leaves (None: enumerate all). Solutions are listed in visit order."""
    _check_callable(propose=propose, evaluate=evaluate)
    terminal = _terminal_fn(propose, is_terminal)
    res = SearchResult(best=None, value=-math.inf)

    def visit(state, depth):  # -> True when the search should stop
        if terminal(state) or depth == max_depth:
            return False
        res.expanded += 1
        scored = []
        for i, child in enumerate(propose(state)):
            scored.append((float(evaluate(child)), i, child))
            res.evaluated += 1
        scored.sort(key=lambda c: (-c[0], c[1]))
        for v, _, child in scored:
            if v < threshold:
                break                                      # sorted: every later child is worse too
            if terminal(child):
                res.solutions.append(child)
                if v > res.value:
                    res.best, res.value = child, v
                if max_solutions is not None and len(res.solutions) >= max_solutions:
                    return True
            elif visit(child, depth + 1):
                return True
        return False

    visit(root, 0)
    return res


# ---------------------------------------------------------------------------------- MCTS
@dataclass
class Node:
    state: object
    parent: "Node" = None
    children: list = None           # None until expanded
    N: int = 0                      # visit count
    W: float = 0.0                  # total value, from the point of view of the player who moved here

    @property
    def Q(self):
        return self.W / self.N if self.N else 0.0


def mcts(root, propose, evaluate, n_simulations=1000, c=math.sqrt(2), rollout=False, rng=None,
         is_terminal=None, rollout_depth=100, negamax=False):
    """UCT search (Kocsis & Szepesvari 2006). Each simulation:
      1. selection: from the root, follow argmax_child Q + c sqrt(ln N_parent / N_child), taking
         unvisited children first, down to a node that has not been expanded
      2. expansion: give that node its children (propose)
      3. evaluation: evaluate(node.state) -- or, with rollout=True, play uniformly random moves
         to a terminal state and take evaluate(terminal) as the reward
      4. backpropagation: add the value to N and W of every node on the path to the root
    Single-agent (default): every value is the searcher's reward. negamax=True, for two-player
    zero-sum games: evaluate(s) is the value for the player who moved into s, a node's W is kept
    from that player's point of view, and the sign flips at every level on the way up.
    Returns SearchResult: root (children's N are the visit counts), best = the most visited
    child's state, value = its mean value Q."""
    _check_callable(propose=propose, evaluate=evaluate)
    if not isinstance(n_simulations, int) or n_simulations < 1:
        raise ValueError(f"n_simulations: expected a positive int, got {n_simulations!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    terminal = _terminal_fn(propose, is_terminal)
    res = SearchResult(best=None, value=-math.inf)
    tree = Node(root)
    for _ in range(n_simulations):
        node = tree
        while node.children:                                       # 1. selection
            unvisited = [ch for ch in node.children if ch.N == 0]
            if unvisited:
                node = unvisited[0]
                break
            log_n = math.log(node.N)
            node = max(node.children, key=lambda ch: ch.Q + c * math.sqrt(log_n / ch.N))
        if node.children is None and not terminal(node.state):     # 2. expansion
            node.children = [Node(s, node) for s in propose(node.state)]
            res.expanded += 1
        state, moves = node.state, 0                               # 3. evaluation
        if rollout:
            while moves < rollout_depth and not terminal(state):
                kids = propose(state)
                if not kids:
                    break
                state = kids[int(rng.integers(len(kids)))]
                moves += 1
        value = float(evaluate(state))
        res.evaluated += 1
        if negamax and moves % 2:
            value = -value      # the reward belongs to whoever moved last in the rollout
        while node is not None:                                    # 4. backpropagation
            node.N += 1
            node.W += value
            if negamax:
                value = -value
            node = node.parent
    res.root = tree
    if tree.children:
        best = max(tree.children, key=lambda ch: (ch.N, ch.Q))
        res.best, res.value = best.state, best.Q
    else:
        res.best, res.value = root, tree.Q
    return res


# ---------------------------------------------------------------------------------- model in the loop
def _dedupe(states):
    seen, out = set(), []
    for s in states:
        try:
            if s in seen:
                continue
            seen.add(s)
        except TypeError:                      # unhashable states: keep them all
            pass
        out.append(s)
    return out


class ModelProposer:
    """propose(state) by a language model (Yao et al. 2023, Sec. 3 (b), "sample" i.i.d. thoughts):
    sample n continuations of prompt(state) and turn each into a child with parse(text, state),
    which returns a child state or None (unparseable or illegal thoughts are dropped); duplicates
    are removed. Seeds come from the proposer's own generator, so a search is reproducible."""

    def __init__(self, model, tokenizer, prompt, parse, n=5, max_new_tokens=32, temperature=0.8,
                 top_p=None, seed=0, stop=None):
        _check_callable(prompt=prompt, parse=parse)
        self.model, self.tokenizer, self.prompt, self.parse = model, tokenizer, prompt, parse
        self.n, self.max_new_tokens, self.temperature, self.top_p, self.stop = n, max_new_tokens, temperature, top_p, stop
        self.rng = np.random.default_rng(seed)

    def __call__(self, state):
        ids = self.tokenizer.encode(self.prompt(state))
        outs = sample_continuations(self.model, ids, self.n, self.max_new_tokens, self.temperature,
                                    self.top_p, seed=int(self.rng.integers(2**63 - 1)), stop=self.stop)
        children = (self.parse(self.tokenizer.decode([int(t) for t in o]), state) for o in outs)
        return _dedupe(c for c in children if c is not None)


class LikelihoodEvaluator:
    """evaluate(state) = mean log p(continuation | context) under the model, where
    (context, continuation) = split(state) are strings: how plausible the model finds the thought."""

    def __init__(self, model, tokenizer, split):
        _check_callable(split=split)
        self.model, self.tokenizer, self.split = model, tokenizer, split

    def __call__(self, state):
        context, continuation = self.split(state)
        lp = continuation_logprobs(self.model, self.tokenizer.encode(context), self.tokenizer.encode(continuation))
        return float(lp.mean()) if len(lp) else 0.0


class ValuePromptEvaluator:
    """evaluate(state) by a value prompt (Yao et al. 2023, Sec. 3 (c), "value"): the model reads
    prompt(state) and its probabilities of the labels (e.g. " sure" / " likely" / " impossible"),
    renormalised over the labels, weight the labels' scores: E[score] in [min, max] of the scores.
    Using the probabilities instead of sampling votes gives the expectation without noise."""

    def __init__(self, model, tokenizer, prompt, labels=None):
        _check_callable(prompt=prompt)
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.labels = dict(labels or {" sure": 1.0, " likely": 0.5, " impossible": 0.0})
        if not self.labels:
            raise ValueError("labels: expected at least one label")

    def label_probs(self, state):  # -> (n_labels,) float64, summing to 1
        ctx = self.tokenizer.encode(self.prompt(state))
        logp = np.array([continuation_logprobs(self.model, ctx, self.tokenizer.encode(l)).sum()
                         for l in self.labels], dtype=np.float64)
        return np.exp(log_softmax(logp))

    def __call__(self, state):
        return float(self.label_probs(state) @ np.array(list(self.labels.values()), dtype=np.float64))
