"""The Game of 24 as a tree-search problem (Yao et al. 2023, Sec. 4.1): combine four numbers with
+ - * / (each number used once) to make 24. A state is the multiset of numbers left; a thought is
one step "a op b = c" that replaces a and b by c, so every path has exactly three steps and the
leaves are single numbers. Arithmetic is exact (fractions), so 8 / (3 - 8 / 3) = 24 counts.

  propose            every legal step (the programmatic thought generator)
  oracle_value       1 if the remaining numbers can still make 24, else 0 (exhaustive check)
  heuristic_value    what a cheap judge can tell: exact with <= 2 numbers left, otherwise 0.5 plus
                     a small bonus for one-step closeness to 24 (the ToT paper's "sure / likely /
                     impossible" value prompt plays this role with a model)
  step_text / parse_step / prompt   the text form a language model reads and writes
"""
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

TARGET = 24
OPS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class State:
    numbers: tuple          # remaining numbers (Fractions), sorted
    exprs: tuple = ()       # the expression that produced each number, same order
    steps: tuple = ()       # "a op b = c" steps taken so far

    @property
    def is_leaf(self):
        return len(self.numbers) == 1

    @property
    def solved(self):
        return self.is_leaf and self.numbers[0] == TARGET

    @property
    def expression(self):   # the full expression of a leaf, e.g. "(13 - 9) * (10 - 4)"
        return self.exprs[0] if self.is_leaf else None


def fmt(x):
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def start(numbers):
    """The root state for a problem, e.g. start([4, 9, 10, 13])."""
    nums = [Fraction(n) for n in numbers]
    if not nums or any(n.denominator != 1 or n < 0 for n in nums):
        raise ValueError(f"numbers: expected non-negative integers, got {numbers!r}")
    order = sorted(range(len(nums)), key=lambda i: nums[i])
    return State(tuple(nums[i] for i in order), tuple(fmt(nums[i]) for i in order))


def apply_op(a, op, b):
    """a op b as a Fraction, or None for division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def _child(state, i, j, op, c):
    a, b = state.numbers[i], state.numbers[j]
    ea, eb = state.exprs[i], state.exprs[j]
    rest = [(n, e) for k, (n, e) in enumerate(zip(state.numbers, state.exprs)) if k not in (i, j)]
    wrap = lambda e: f"({e})" if " " in e else e          # compound sub-expressions get parentheses
    rest.append((c, f"{wrap(ea)} {op} {wrap(eb)}"))
    rest.sort(key=lambda t: t[0])
    return State(tuple(n for n, _ in rest), tuple(e for _, e in rest),
                 state.steps + (f"{fmt(a)} {op} {fmt(b)} = {fmt(c)}",))


def propose(state, dedupe=True):
    """Every legal next step: for each pair (a, b), a+b, a*b, a-b, b-a, a/b, b/a (no division by 0).
    dedupe=True keeps one child per resulting multiset of numbers (the first found)."""
    children, seen = [], set()
    n = len(state.numbers)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            for op in OPS:
                if op in "+*" and j < i:          # commutative: one order is enough
                    continue
                c = apply_op(state.numbers[i], op, state.numbers[j])
                if c is None:
                    continue
                child = _child(state, i, j, op, c)
                if dedupe:
                    if child.numbers in seen:
                        continue
                    seen.add(child.numbers)
                children.append(child)
    return children


def can_reach(numbers, target=TARGET):
    """True if the multiset of numbers (Fractions) can be combined into target (exhaustive)."""
    if len(numbers) == 1:
        return numbers[0] == target
    return any(can_reach(ch.numbers, target) for ch in propose(State(tuple(numbers), ("",) * len(numbers))))


def oracle_value(state):
    return 1.0 if can_reach(state.numbers) else 0.0


def heuristic_value(state):
    if len(state.numbers) <= 2:                   # a judge can check two numbers exactly
        return oracle_value(state)
    # otherwise "likely", nudged toward states one step away from a number close to 24
    gap = min(abs(x - TARGET) for child in propose(state) for x in child.numbers)
    return 0.5 + 0.1 / (1.0 + float(gap))


def random_problems(n, rng, low=1, high=13):
    """n problems of four integers drawn uniformly from [low, high] (with replacement), sorted."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected np.random.Generator, got {type(rng).__name__}")
    return [tuple(sorted(int(x) for x in rng.integers(low, high + 1, size=4))) for _ in range(n)]


# ---------------------------------------------------------------------------------- text form
def prompt(state):
    """What a model continues with one step: "4 9 10 13:" -> " 13 - 9 = 4\\n"."""
    return " ".join(fmt(x) for x in state.numbers) + ":"


def step_text(state, child):
    """The training / proposal text of a step: prompt(state) + " a op b = c\\n"."""
    return prompt(state) + " " + child.steps[-1] + "\n"


_STEP = re.compile(r"^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)")


def parse_step(text, state):
    """The child of `state` a generated step describes, or None if it does not parse, uses numbers
    not in the state, or its arithmetic is wrong."""
    m = _STEP.match(text)
    if not m:
        return None
    a, op, b, c = Fraction(m.group(1)), m.group(2), Fraction(m.group(3)), Fraction(m.group(4))
    if apply_op(a, op, b) != c:
        return None
    nums = list(state.numbers)
    try:
        i = nums.index(a)
        j = next(k for k in range(len(nums)) if k != i and nums[k] == b)
    except (ValueError, StopIteration):
        return None
    return _child(state, i, j, op, c)
