"""The package's shape, checked: every import in minillm/ (module level and inside functions) goes
one way down the layer table below, with no cycles, nothing imports the CLI, and no function is
longer than a screen (80 lines in minillm/, 100 in csrc/). README's "Architecture" section states
the same table.

A module may import modules of its own part (e.g. quant/ within quant/) and of any part on a LOWER
row; never one on its own row or above."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "minillm"

# row -> parts of minillm (a top-level module or subpackage); lower rows are imported by higher ones
LAYERS = [
    ["_native"],                                  # the compiled C kernels (cffi)
    ["kernels"],                                  # NumPy references + native dispatch
    ["io"],                                       # file containers: safetensors, GGUF, token files, atomic writes
    ["nn", "tokenizer"],                          # layers (forward/backward pairs); tokenizers
    ["model"],                                    # ModelConfig + Transformer
    ["optim", "checkpoint", "scaling", "quant", "inference", "batches", "distributed", "metrics"],
    ["train", "align", "reasoning"],              # loops and methods built on a model
    ["run_folder"],                               # a `minillm train` run folder: paths, load_run
    ["loaders"],                                  # assembling models from files (any of them: loaders.load)
    ["data", "serve"],                            # corpus pipeline (perplexity filter loads a run); HTTP server
    ["cli", "__init__"],                          # the `minillm` command; the package root
]
RANK = {part: row for row, parts in enumerate(LAYERS) for part in parts}
MAX_PY_LINES, MAX_C_LINES = 80, 100


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _part(module):
    """minillm.quant.linear -> "quant"; minillm (the package root) -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(importer, path, node, modules):
    """Modules of minillm named by one Import/ImportFrom node (edges to submodules when named)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "minillm"]
    if node.level:
        base = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "minillm":
        return []
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
    named = [a for a in node.names if f"{target}.{a.name}" not in modules]
    if named or target in modules and not subs:
        subs.append(target)
    return subs


def _import_graph():
    """{module: [(imported module, line), ...]} over every import statement, wherever it sits."""
    modules = _modules()
    known = set(modules) | {"minillm._native"}
    graph = {}
    for name, path in modules.items():
        edges = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(name, path, node, known):
                    edges.append((target, node.lineno))
        graph[name] = edges
    return graph


def test_every_part_is_in_the_layer_table():
    missing = sorted({_part(m) for m in _modules()} - set(RANK))
    assert not missing, f"add these parts of minillm to LAYERS (and README's Architecture table): {missing}"


def test_imports_follow_the_layer_order():
    bad = []
    for module, edges in _import_graph().items():
        src = _part(module)
        for target, line in edges:
            dst = _part(target)
            if dst != src and RANK[dst] >= RANK[src]:
                bad.append(f"{module}:{line} imports {target} ({src} is row {RANK[src]}, {dst} row {RANK[dst]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_nothing_imports_the_cli():
    bad = [f"{m}:{line} imports {t}" for m, edges in _import_graph().items() if _part(m) != "cli"
           for t, line in edges if _part(t) == "cli"]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: sorted({t for t, _ in edges if t != m}) for m, edges in _import_graph().items()}
    state, stack, cycles = {}, [], []

    def visit(m):  # depth-first search; a grey node met again closes a cycle
        state[m] = "grey"
        stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == "grey":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "black"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_imports_and_cycles(tmp_path):
    """The walk above must not miss an import hidden in a function (a cycle would hide there)."""
    src = "def f():\n    from ..cli import main\n    return main\n"
    node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom))
    fake = PKG / "quant" / "api.py"
    assert _resolve("minillm.quant.api", fake, node, set(_modules())) == ["minillm.cli"]


# ------------------------------------------------------------------ function length
def _python_functions():
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


C_FUNCTION = re.compile(r"^(?![#/\s}])[^;{}()]*\b(\w+)\s*\([^;{}]*\)\s*\{", re.M)


def _c_functions(text):
    """(name, first line, lines) of every function definition in a C file: a signature starting at
    column 0 and ending in "{", up to the next "}" at column 0 (the project's layout)."""
    for m in C_FUNCTION.finditer(text):
        start = text.count("\n", 0, m.start()) + 1
        end = text.find("\n}", m.end())
        if end < 0:
            continue
        yield m.group(1), start, text.count("\n", m.start(), end) + 2


def test_c_function_finder():
    text = "#include <x.h>\nstatic int f(int a,\n          int b) {\n    return a;\n}\n\nvoid g(void) {\n}\n"
    assert list(_c_functions(text)) == [("f", 2, 4), ("g", 7, 2)]


def test_python_functions_are_at_most_80_lines():
    long = [f"{where} is {n} lines" for where, n in _python_functions() if n > MAX_PY_LINES]
    assert not long, f"functions longer than {MAX_PY_LINES} lines (split into named steps):\n" + "\n".join(long)


def test_c_functions_are_at_most_100_lines():
    files = sorted(p for p in (ROOT / "csrc").iterdir() if p.suffix in (".c", ".h", ".inc"))
    if not files:
        pytest.skip("no csrc/ in this checkout")
    long = [f"{p.relative_to(ROOT)}:{line} {name} is {n} lines" for p in files
            for name, line, n in _c_functions(p.read_text(encoding="utf-8")) if n > MAX_C_LINES]
    assert not long, f"C functions longer than {MAX_C_LINES} lines:\n" + "\n".join(long)
