"""The package layout's contracts, read from the source with ``ast``.

* no import circle anywhere in ``hashlab/``, ``trainers/`` and ``analysis/``, counting imports
  inside functions too;
* trainers consume maps and never generate them: ``trainers/`` imports only ``hashlab.io``, the
  in-memory map (``hashlab.maps.indexmap``), the geometry configs, the config helpers and the
  version;
* every stage sub-package imports on its own.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import networkx as nx
import pytest

from tests.conftest import REPO

PACKAGES = ("hashlab", "trainers", "analysis")
TRAINERS_MAY_IMPORT = ("hashlab.io", "hashlab.maps.indexmap", "hashlab.maps.geometry", "hashlab.configs",
                       "hashlab._version")
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
    assert {"hashlab.maps.hashes", "hashlab.io.format", "hashlab.stats.balance", "trainers.torch_backend.train",
            "analysis.main_job"} <= set(graph)
    assert graph.has_edge("hashlab.stats.theory", "hashlab.stats.entropy")
    assert graph.has_edge("hashlab.commands.check", "hashlab.equiv.check")


def test_no_import_circles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import circles: {cycles[:5]}"


def test_a_circle_would_be_found():
    g = nx.DiGraph([("hashlab.stats.balance", "hashlab.stats.theory"),
                    ("hashlab.stats.theory", "hashlab.stats.balance")])
    assert list(nx.simple_cycles(g))


def test_trainers_import_only_maps_io_and_config_helpers(graph):
    bad = {(src, dst) for src, dst in graph.edges
           if src.startswith("trainers") and dst.startswith("hashlab")
           and not any(dst == ok or dst.startswith(ok + ".") for ok in TRAINERS_MAY_IMPORT)}
    assert not bad, f"trainers import map generators or other hashlab stages: {sorted(bad)}"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_imports_on_its_own(stage):
    mod = importlib.import_module(stage)
    assert mod.__doc__ and len(mod.__doc__.strip().splitlines()) >= 2


README_NAMES = ("HashSpec", "Architecture", "ARCHITECTURES", "SpecError", "build_map", "dirichlet_probabilities",
                "IndexMap", "LayerMap", "ZERO", "index_dtype", "save_index_file", "load_index_file", "FormatError",
                "ConvGeometry", "conv_map", "conv1d_map", "conv2d_map", "RNNGeometry", "rnn_map", "describe_map",
                "recognize_conv", "recognize_rnn", "__version__")


def test_top_level_api_is_unchanged():
    import hashlab
    import hashlab.stats

    assert all(hasattr(hashlab, n) for n in README_NAMES)
    assert hashlab.ConvGeometry is hashlab.maps.geometry.ConvGeometry is hashlab.maps.conv.ConvGeometry
    assert callable(hashlab.stats.map_report) and callable(hashlab.stats.format_report)
