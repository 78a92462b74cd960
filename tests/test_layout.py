"""The package layout's contracts, read from the source with ``ast``.

Dependencies point one way, down the pipeline maps -> io -> stats / equiv -> trainers -> analysis:

* no import circle anywhere in ``hashlab/``, ``trainers/`` and ``analysis/``, counting imports
  inside functions too;
* the library never imports its users: no module under ``hashlab/`` imports ``trainers`` or
  ``analysis`` (they add their commands through the ``hashlab.commands`` entry points), and
  ``trainers`` never imports ``analysis``;
* trainers consume maps and never generate them: ``trainers/`` imports only ``hashlab.io``, the
  in-memory map (``hashlab.maps.indexmap``), the geometry configs, the config helpers, the version
  and the CLI's dataclass-to-flags helper;
* one stated exception (:data:`ON_THE_FLY`): the hash-on-the-fly layer
  ``trainers.torch_backend.virtual`` and its Triton kernels compute a spec's hash inside the kernel
  instead of reading a map, so they, and no other trainer module, import ``hashlab.maps.onthefly``
  (per-weight hashes, tested bit for bit against ``build_map`` in ``tests/hashlab/maps/test_onthefly.py``)
  and the spec it reads (``hashlab.maps.spec``);
* ``import hashlab`` loads none of torch, networkx, igraph, matplotlib, scipy.stats, trainers, analysis;
* every stage sub-package imports on its own.

Each rule is a function of the import graph, and a test shows it catches a violation.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from tests.conftest import REPO

PACKAGES = ("hashlab", "trainers", "analysis")
TRAINERS_MAY_IMPORT = (
    "hashlab.io",
    "hashlab.maps.indexmap",
    "hashlab.maps.geometry",
    "hashlab.configs",
    "hashlab._version",
    "hashlab.commands.dataclass_args",
)
# the one exception: trainer module -> the hashlab modules it alone may import besides TRAINERS_MAY_IMPORT
ON_THE_FLY = {
    "trainers.torch_backend.virtual": ("hashlab.maps.onthefly", "hashlab.maps.spec"),
    "trainers.torch_backend.virtual_triton": ("hashlab.maps.onthefly",),
}
# package -> the packages it must never import (the pipeline's upper layers)
NEVER_IMPORTS = {"hashlab": ("trainers", "analysis"), "trainers": ("analysis",)}
# what `import hashlab` must not load: heavy or optional packages, and the layers above the library
NOT_ON_IMPORT = (
    "torch",
    "networkx",
    "igraph",
    "matplotlib",
    "scipy.stats",
    "scipy.cluster",
    "trainers",
    "analysis",
)
STAGES = ("hashlab.maps", "hashlab.io", "hashlab.stats", "hashlab.equiv", "hashlab.commands")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its body (a package's ``__init__`` for a package)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known}
    return out


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        g.add_edges_from((name, t) for t in _imports(name, path, set(mods)) if t != name)
    return g


def test_the_graph_sees_the_project(graph):
    assert {
        "hashlab.maps.hashes",
        "hashlab.io.format",
        "hashlab.stats.balance",
        "trainers.torch_backend.training",
        "analysis.main_job",
    } <= set(graph)
    assert graph.has_edge("hashlab.stats.theory", "hashlab.stats.entropy")
    assert graph.has_edge("hashlab.commands.check", "hashlab.equiv.check")


def test_no_import_circles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import circles: {cycles[:5]}"


def test_a_circle_would_be_found():
    g = nx.DiGraph(
        [("hashlab.stats.balance", "hashlab.stats.theory"), ("hashlab.stats.theory", "hashlab.stats.balance")]
    )
    assert list(nx.simple_cycles(g))


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def upward_imports(graph: nx.DiGraph) -> set[tuple[str, str]]:
    """Edges from a package to one of the packages above it (:data:`NEVER_IMPORTS`)."""
    return {
        (src, dst)
        for src, dst in graph.edges
        for pkg, above in NEVER_IMPORTS.items()
        if _in(src, pkg) and any(_in(dst, a) for a in above)
    }


def trainer_imports_outside_allowed(graph: nx.DiGraph) -> set[tuple[str, str]]:
    """Edges from ``trainers`` to a hashlab module outside :data:`TRAINERS_MAY_IMPORT` (and :data:`ON_THE_FLY`)."""
    return {
        (src, dst)
        for src, dst in graph.edges
        if _in(src, "trainers")
        and _in(dst, "hashlab")
        and not any(_in(dst, ok) for ok in TRAINERS_MAY_IMPORT + ON_THE_FLY.get(src, ()))
    }


def test_the_library_never_imports_its_users(graph):
    bad = upward_imports(graph)
    assert not bad, f"imports against the pipeline (hashlab -> trainers/analysis, trainers -> analysis): {sorted(bad)}"


@pytest.mark.parametrize(
    "edge",
    [
        ("hashlab.commands.check", "trainers.torch_backend.equivalence"),
        ("hashlab.commands.stats", "analysis.reproduce"),
        ("hashlab", "trainers"),
        ("trainers.torch_backend.group", "analysis.runs"),
    ],
)
def test_an_upward_import_would_be_found(graph, edge):
    g = graph.copy()
    g.add_edge(*edge)
    assert upward_imports(g) == {edge}


def test_trainers_import_only_maps_io_and_config_helpers(graph):
    bad = trainer_imports_outside_allowed(graph)
    assert not bad, f"trainers import map generators or other hashlab stages: {sorted(bad)}"


@pytest.mark.parametrize("dst", ["hashlab.maps.hashes", "hashlab.stats.balance", "hashlab.commands.build"])
def test_a_trainer_importing_a_generator_would_be_found(graph, dst):
    g = graph.copy()
    g.add_edge("trainers.torch_backend.layers", dst)
    assert trainer_imports_outside_allowed(g) == {("trainers.torch_backend.layers", dst)}


def test_the_on_the_fly_exception_is_used_and_covers_one_module_only(graph):
    for src, allowed in ON_THE_FLY.items():
        assert {dst for dst in graph.successors(src) if _in(dst, "hashlab.maps")} == set(allowed)
    g = graph.copy()
    g.add_edge("trainers.torch_backend.layers", "hashlab.maps.onthefly")  # any other trainer module is caught
    assert trainer_imports_outside_allowed(g) == {("trainers.torch_backend.layers", "hashlab.maps.onthefly")}
    g = graph.copy()
    g.add_edge("trainers.torch_backend.virtual", "hashlab.maps.hashes")  # and the exception names what it allows
    assert trainer_imports_outside_allowed(g) == {("trainers.torch_backend.virtual", "hashlab.maps.hashes")}


def modules_loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter has in ``sys.modules`` after running ``statement``."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy_modules(loaded: set[str]) -> set[str]:
    return {m for m in loaded if any(_in(m, heavy) for heavy in NOT_ON_IMPORT)}


def test_import_hashlab_loads_no_heavy_or_upper_package():
    assert not heavy_modules(modules_loaded_by("import hashlab"))


def test_a_heavy_import_would_be_found():
    assert heavy_modules(modules_loaded_by("import hashlab, networkx")) >= {"networkx"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_imports_on_its_own(stage):
    mod = importlib.import_module(stage)
    assert mod.__doc__ and len(mod.__doc__.strip().splitlines()) >= 2


# the top-level names the README documents
README_NAMES = (
    "HashSpec Architecture ARCHITECTURES SpecError build_map dirichlet_probabilities IndexMap LayerMap ZERO "
    "index_dtype save_index_file load_index_file FormatError ConvGeometry conv_map conv1d_map conv2d_map RNNGeometry "
    "rnn_map describe_map recognize_conv recognize_rnn __version__"
).split()


def test_top_level_api_is_unchanged():
    import hashlab
    import hashlab.stats

    assert all(hasattr(hashlab, n) for n in README_NAMES)
    assert hashlab.ConvGeometry is hashlab.maps.geometry.ConvGeometry is hashlab.maps.conv.ConvGeometry
    assert callable(hashlab.stats.map_report) and callable(hashlab.stats.format_report)


def layout_section(readme: str) -> str:
    """The README's ``## Layout`` section."""
    start = readme.index("\n## Layout\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end >= 0 else None]


def modules_missing_from(section: str) -> list[str]:
    """Modules of the three packages whose file name the layout section does not name."""
    return [
        f"{pkg}/{path.relative_to(REPO / pkg)}"
        for pkg in PACKAGES
        for path in sorted((REPO / pkg).rglob("*.py"))
        if path.name != "__init__.py"
        and f"`{path.name}`" not in section
        and f"`{path.relative_to(REPO)}`" not in section
    ]


def test_the_readme_layout_table_names_every_module():
    missing = modules_missing_from(layout_section((REPO / "README.md").read_text()))
    assert not missing, f"README.md's Layout table does not name: {missing}"


def test_a_module_missing_from_the_table_would_be_found():
    section = layout_section((REPO / "README.md").read_text())
    assert modules_missing_from(section.replace("`weights.py`", "`w.py`")) == ["hashlab/io/weights.py"]
