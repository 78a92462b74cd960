"""Shared test configuration: the real-data root and hypothesis profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# One BLAS thread per test process, set before the xdist workers start and import numpy: with -n 2 the
# workers already fill the cores, and competing OpenBLAS threads made a 125 x 784 matrix_rank take 2-3 s
# instead of 5 ms on a loaded 2-core box.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("HASHLAB_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()

# numba compiles on first call, so no per-example deadline; CI runs a fixed, derandomized profile
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# CI sets this (.ci/run): there the data must be present, and a missing MNIST fails instead of skipping
REQUIRE_DATA = os.environ.get("HASHLAB_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``$HASHLAB_DATA_ROOT`` or ``../shared/data`` (torchvision layout).

    Tests that need real MNIST take this fixture. Without MNIST there they are skipped with a reason
    that says where the data was looked for and how to point at it; with ``HASHLAB_REQUIRE_DATA=1``
    (CI) they fail instead.
    """
    if not (DATA_ROOT / "MNIST" / "raw").is_dir():
        reason = (
            f"needs real MNIST, not found under {DATA_ROOT}/MNIST/raw; set HASHLAB_DATA_ROOT to a "
            "torchvision data root that holds it"
        )
        if REQUIRE_DATA:
            pytest.fail(reason + " (HASHLAB_REQUIRE_DATA is set)")
        pytest.skip(reason)
    return DATA_ROOT


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """``$HASHLAB_DATA_ROOT`` or ``../shared/data``, where it holds ``cifar-10-batches-py`` (the python pickles).

    Tests that need real CIFAR-10 take this fixture. Without it they are skipped with a reason that
    says where it was looked for; with ``HASHLAB_REQUIRE_DATA=1`` (CI) they fail instead. The copy in
    ``../shared/data`` is rebuilt (lossless, but its md5s differ from torchvision's): read it with
    ``verify_md5=False``.
    """
    if not (DATA_ROOT / "cifar-10-batches-py").is_dir():
        reason = (
            f"needs real CIFAR-10, not found under {DATA_ROOT}/cifar-10-batches-py; set HASHLAB_DATA_ROOT to a "
            "torchvision data root that holds it"
        )
        if REQUIRE_DATA:
            pytest.fail(reason + " (HASHLAB_REQUIRE_DATA is set)")
        pytest.skip(reason)
    return DATA_ROOT


def python_module(module: str, *args: str) -> list[str]:
    """The command line ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` from the repository root; its output is captured as text."""
    return subprocess.run(
        python_module(module, *args), cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout
    )
