"""The architecture's rules, checked on the source (no Redis, no sockets).

* import-linter's contracts in pyproject.toml: no import cycles among smsbot's and the commands'
  modules, and the hot path imports only downwards (cli -> daemon -> app -> api -> transport ->
  pipeline -> delivery -> dispatch -> outbox -> session -> connections -> commands -> router ->
  store -> steps, keys, pdu -> config, codec, messages);
* no import inside a function to dodge a cycle: outside the CLI (which defers its subcommands'
  imports so that `smsbot --help` starts fast), an import of smsbot's or the commands' own modules
  inside a function must say on its line why it is deferred (a cost, never a cycle);
* no test module imports another test module (tests/*.py, tests/unit/*.py): shared helpers live in
  helper modules, shared fixtures in a conftest.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
OWN = ("smsbot", "commands")


def test_import_contracts_are_kept(tmp_path: Path):
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is a test dependency (pip install -e '.[test]')"
    res = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.stdout.count("KEPT") == 2, res.stdout


def _deferred_own_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            tc = in_type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if in_function and not in_type_checking and isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                own = any(n.split(".")[0] in OWN for n in names) or (isinstance(child, ast.ImportFrom) and child.level > 0)
                if own and "#" not in lines[child.lineno - 1]:
                    out.append((child.lineno, lines[child.lineno - 1].strip()))
            visit(child, fn, tc)

    visit(tree, False, False)
    return out


def test_no_import_inside_a_function_without_its_reason():
    offenders = []
    for pkg in OWN:
        for f in sorted((REPO / pkg).rglob("*.py")):
            rel = f.relative_to(REPO)
            if rel.parts[:2] == ("smsbot", "cli"):
                continue
            offenders += [f"{rel}:{n}: {src}" for n, src in _deferred_own_imports(f)]
    assert not offenders, "imports inside functions (hoist them, or say on the line why they wait):\n" + "\n".join(offenders)


TESTS = REPO / "tests"


def _test_module_imports(path: Path) -> list[tuple[int, str]]:
    """(line, source) of each import in `path` (a module of the tests package) of a test module:
    `tests.test_*` or `tests.unit.test_*`, absolute or relative, also as `from tests import test_x`."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]  # ("tests",) or ("tests", "unit")
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module] + [module + [a.name] for a in node.names]
        else:
            continue
        if any(t[:1] == ["tests"] and any(part.startswith("test_") for part in t[1:]) for t in targets):
            out.append((node.lineno, lines[node.lineno - 1].strip()))
    return out


def test_no_test_module_imports_another():
    """What several test modules share lives in a helper module (tests/helpers.py, tests/state.py, ...)
    and its fixtures in a conftest, never in a test module that others import: a test module's own
    helpers change with its tests, and a fixture imported by name hides where it comes from."""
    modules = sorted([*TESTS.glob("*.py"), *(TESTS / "unit").glob("*.py")])
    assert len(modules) > 50, "the scan found the tests"
    offenders = [f"{f.relative_to(REPO)}:{n}: {src}" for f in modules for n, src in _test_module_imports(f)]
    assert not offenders, "a test module imported by another (move what they share to a helper module or a conftest):\n" \
        + "\n".join(offenders)


@pytest.mark.parametrize(("where", "source", "caught"), [
    ("tests/test_x.py", "from .test_api import start_api", True),
    ("tests/test_x.py", "from tests.test_api import start_api", True),
    ("tests/test_x.py", "from tests import test_api", True),
    ("tests/test_x.py", "from . import test_api", True),
    ("tests/test_x.py", "import tests.test_api", True),
    ("tests/unit/test_x.py", "from ..test_api import OPS", True),
    ("tests/unit/test_x.py", "from .test_layer import thing", True),
    ("tests/test_x.py", "def f():\n    from .test_api import OPS", True),
    ("tests/test_x.py", "from .helpers import wait_until", False),
    ("tests/test_x.py", "from . import helpers", False),
    ("tests/unit/test_x.py", "from tests.helpers import Clock", False),
    ("tests/test_x.py", "from smsbot import test_mode", False),
])
def test_the_scan_catches_every_form_of_importing_a_test_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 where: str, source: str, caught: bool):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n", encoding="utf-8")
    assert bool(_test_module_imports(path)) is caught
