"""The package stays small (issue 12): every file in dsda/ has at most 400 lines and every function at most
40 code lines, except the two loops of the method (the chain loop of the sampler and the DAMO loop, at most
60 each). Code lines are the lines of a function that are not blank, not a comment and not its docstring;
a nested function counts inside its parent and on its own."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dsda"
MAX_FUNCTION_LINES = 40
MAX_FILE_LINES = 400
LOOPS = {("sampler.py", "run_chains"): 60, ("damo.py", "damo"): 60}   # the method's two loops


def code_lines(lines: list[str], node: ast.AST) -> int:
    body = node.body
    doc = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_code_lines_counts_code_only():
    src = 'def f(x):\n    """Doc\n    string."""\n    # a comment\n\n    y = x + 1\n    return y\n'
    assert code_lines(src.splitlines(), ast.parse(src).body[0]) == 3   # def, y = ..., return


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_files_and_functions_are_short(path):
    src = path.read_text()
    lines = src.splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name} has {len(lines)} lines (at most {MAX_FILE_LINES})"
    funcs = [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    long = {f"{n.name} (line {n.lineno})": code_lines(lines, n) for n in funcs
            if code_lines(lines, n) > LOOPS.get((path.name, n.name), MAX_FUNCTION_LINES)}
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} code lines: {long}"
