"""The shape ARCHITECTURE.md asks for, checked on the source: cli/ and client/ never import server
code, no import cycle at module level, nothing grafts methods onto a class with setattr, and
README's layout table names every package of the tree."""

import ast
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BERTH = os.path.join(REPO, "berth")

# what a client may import: its own packages, the shared pure ones (dockerfile: the build context's
# .dockerignore; gotime: Go's durations; goquote: Go's strconv.Quote), and berth.archive (cp's host side) with the in-root paths it stands on
CLIENT_OK = ("berth.cli", "berth.client", "berth.errors", "berth.oci", "berth.fastjson", "berth.units", "berth.opts",
             "berth.gotime", "berth.goquote", "berth.gotemplate",
             "berth.__version__", "berth.dockerfile", "berth.archive", "berth.linux.paths",
             "berth.linux.syscalls")


def _modules(pkg):
    for dirpath, _dirs, files in os.walk(os.path.join(BERTH, pkg)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


def _imports(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "berth":
                for a in node.names:
                    yield node.lineno, f"berth.{a.name}"
            else:
                yield node.lineno, node.module


def test_cli_and_client_import_no_server_code():
    bad = []
    for pkg in ("cli", "client"):
        for path in _modules(pkg):
            for line, mod in _imports(path):
                if mod.startswith("berth") and not mod.startswith(CLIENT_OK):
                    bad.append(f"{os.path.relpath(path, REPO)}:{line} imports {mod}")
    assert bad == []


def test_archive_and_linux_paths_import_only_their_layer():
    for path in list(_modules("archive")) + [os.path.join(BERTH, "linux", "paths.py")]:
        for _line, mod in _imports(path):
            if mod.startswith("berth"):
                assert mod.startswith(("berth.errors", "berth.linux", "berth.archive")), (path, mod)


def test_no_import_cycle_at_module_level():
    """Module-level imports of berth form no cycle (imports inside functions and under
    TYPE_CHECKING are left out; so is a package's __init__ importing its own modules)."""
    mods = {}
    for dirpath, _dirs, files in os.walk(BERTH):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), REPO)[:-3].replace("/", ".")
                mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    graph = {}
    for mod, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        deps = set()
        for node in tree.body:  # module level only: an `if TYPE_CHECKING:` block is an ast.If
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        is_pkg = path.endswith("__init__.py")
        graph[mod] = {d for d in deps if d in mods and d != mod and not (is_pkg and d.startswith(mod + "."))}
    cycles = []
    state = {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert cycles == []


def test_no_setattr_grafting():
    grafts = []
    for path in _modules(""):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if re.search(r"setattr\((cls|[A-Z]\w*)\b", line):  # onto a class, not an instance
                    grafts.append(f"{os.path.relpath(path, REPO)}:{n}")
    assert grafts == []


def test_readme_layout_names_every_package():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    table = text.split("## Layout", 1)[1].split("```")[1]
    named = set(re.findall(r"^(berth/[\w/]+/)", table, re.M))
    packages = {os.path.relpath(d, REPO) + "/" for d, _dirs, files in os.walk(BERTH)
                if "__init__.py" in files and d != BERTH}
    # a package inside another may be described by its parent's line
    missing = sorted(p for p in packages if p not in named and p.count("/") <= 2)
    assert missing == []
    assert sorted(n for n in named if n not in packages) == []
