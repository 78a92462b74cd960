"""The study loader's plan: the order and keys of every profile's runs are pinned (committed results and
resumed reproductions find their runs by key, in plan order)."""

from __future__ import annotations

import hashlib

import pytest

from analysis.study import load_profiles, plan

# First 16 hex digits of the SHA-256 of the space-joined run keys, in plan order (written by the loader's
# five-deep loop before the grid became an itertools.product).
PLAN_DIGESTS = {
    ("smoke", "mnist"): (16, "ad0aae7eb48adf14"),
    ("smoke", "cifar10"): (16, "f4f00e55f2e1c281"),
    ("quick", "mnist"): (162, "7e85d02620e84daa"),
    ("quick", "cifar10"): (162, "42d3e6ea81af80e2"),
    ("paper", "mnist"): (549, "29103349aff6bd8b"),
    ("paper", "cifar10"): (549, "8530cf166203390c"),
    ("hashednets", "mnist"): (12, "99e05186a39dbfc6"),
    ("hashednets", "cifar10"): (12, "643b70f5c1d76404"),
}


@pytest.mark.parametrize(("profile", "dataset"), sorted(PLAN_DIGESTS))
def test_every_profile_plans_the_same_runs_in_the_same_order(profile, dataset):
    keys = [r.key for r in plan(load_profiles()[profile], dataset)]
    assert (len(keys), hashlib.sha256(" ".join(keys).encode()).hexdigest()[:16]) == PLAN_DIGESTS[profile, dataset]
