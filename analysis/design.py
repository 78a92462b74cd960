"""The pre-registered confirmatory design of the reproduction, as a typed, versioned TOML file.

A design (``analysis/studies/<name>.toml``, ``version = 1``; the reproduction's is
``confirmatory.toml``) is written and committed before its runs. Per claim of Chang & Lipson
(2018, section 5) it names one primary comparison on named cells of one study, the test's
direction, the smallest effect of interest (SESOI), the equivalence margin that a "does not hold"
verdict needs, and the number of seeds (from the power analysis, :mod:`analysis.power`); at design
level, the significance level, the "stuck" threshold and the one aggregation rule.
:mod:`analysis.confirm` evaluates a design on the runs of its profile.

Primary values, per seed (a seed = one paired replicate: train seed ``i`` with hash seed ``i``):

- ``contrast``: mean accuracy (pp) over the ``better`` levels minus the mean over the ``worse``
  levels, at each of ``sparsities``; combined ``across`` them by ``"every"`` (an intersection-union
  test: the largest p) or ``"mean"`` (the per-seed mean over sparsities);
- ``difference``: that contrast at ``sparsities[0]`` minus at ``sparsities[1]``;
- ``curvature``: the quadratic coefficient of accuracy (pp) on the map's normalized entropy over
  ``levels``, at ``sparsities[0]`` minus at ``sparsities[1]``.

Nothing here trains or imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashlab.configs import check_choice, check_int, check_real

__all__ = ["ClaimDesign", "Design", "DesignError", "TESTS", "DESIGN_DIR", "PILOT_STUDY", "load_design", "read_pilot"]

DESIGN_DIR = Path(__file__).resolve().parent / "studies"
REPO = Path(__file__).resolve().parent.parent
"""Where design files live beside the studies they name (``analysis/studies/*.toml``)."""

TESTS = ("contrast", "difference", "curvature")
"""The kinds of primary comparison (module docstring)."""
PILOT_STUDY = {
    "confirm_balance": "balance",
    "confirm_noise": "noise",
    "confirm_outlier": "noise",
    "cifar_balance": "balance",
    "cifar_noise": "noise",
    "cifar_outlier": "noise",
}
"""The study of the pilot grid (the ``paper`` profile's) that holds each confirmatory study's cells."""
_ACROSS = ("every", "mean")
_DIRECTIONS = ("greater", "less")
_PARAMS = ("alpha", "radius")


class DesignError(ValueError):
    """A design file is invalid; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class ClaimDesign:
    """One claim's pre-registered primary comparison.

    Parameters
    ----------
    claim : int
        The paper's claim, 1-6.
    statement : str
        The claim in words.
    test : {"contrast", "difference", "curvature"}
        The primary value per seed (module docstring).
    study : str
        The study whose runs hold the cells.
    param : {"alpha", "radius"}
        The swept map parameter that ``better``, ``worse`` and ``levels`` name.
    better, worse : tuple of float
        Levels of ``param`` claimed better and worse (``contrast``, ``difference``).
    levels : tuple of float
        Levels fitted by ``curvature`` (>= 3).
    sparsities : tuple of float
        The cells' sparsities (``difference`` and ``curvature``: exactly two, dense first).
    across : {"every", "mean"}
        How a ``contrast`` over several sparsities is combined.
    direction : {"greater", "less"}
        The claimed sign of the primary value.
    sesoi : float
        Smallest effect of interest, in ``unit`` (> 0).
    margin : float
        Equivalence margin of "does not hold", in ``unit`` (>= ``sesoi``).
    unit : str
        Unit of the primary value (``"pp"``: percentage points of test accuracy).
    seeds : int
        Paired seeds planned (>= 2); the study must run at least as many replicates.
    rationale, secondary : str
        The primary value in words; the secondary tests (Holm within the claim).
    """

    claim: int
    statement: str
    test: str
    study: str
    param: str
    sparsities: tuple[float, ...]
    direction: str
    sesoi: float
    margin: float
    unit: str
    seeds: int
    better: tuple[float, ...] = ()
    worse: tuple[float, ...] = ()
    levels: tuple[float, ...] = ()
    across: str = "every"
    rationale: str = ""
    secondary: str = ""

    @property
    def cells(self) -> list[tuple[float, float]]:
        """Every ``(level, sparsity)`` the primary value reads."""
        lv = self.levels if self.test == "curvature" else self.better + self.worse
        return [(v, s) for s in self.sparsities for v in lv]


@dataclass(frozen=True)
class Design:
    """A pre-registered confirmatory design (module docstring).

    Parameters
    ----------
    name, description : str
    profile : str
        The profile (``profiles.toml``) whose runs answer it.
    alpha : float
        Level of every test, in (0, 0.5).
    power : float
        Power the seeds were planned for, in (0, 1).
    stuck_below : float
        A run whose test accuracy (fraction) is below this is "stuck".
    pilot : str
        The pilot results the power analysis read (``{dataset}`` is replaced).
    aggregation : str
        The aggregation rule, in words.
    claims : tuple of ClaimDesign
        One per claim, in order.
    """

    name: str
    description: str
    profile: str
    alpha: float
    power: float
    stuck_below: float
    pilot: str
    aggregation: str
    claims: tuple[ClaimDesign, ...]

    def claim(self, number: int) -> ClaimDesign:
        """The design of claim ``number``.

        Raises
        ------
        KeyError
            If the design has no such claim.
        """
        for c in self.claims:
            if c.claim == number:
                return c
        raise KeyError(f"design {self.name!r} has no claim {number}")


def _need(d: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise DesignError(f"{where}: missing required field {key!r}")
    if not isinstance(d[key], types) or isinstance(d[key], bool):
        raise DesignError(f"{where}: {key} has the wrong type ({type(d[key]).__name__})")
    return d[key]


def _floats(d: dict[str, Any], key: str, where: str) -> tuple[float, ...]:
    raw = d.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw):
        raise DesignError(f"{where}: {key} must be a list of numbers, got {raw!r}")
    return tuple(float(x) for x in raw)


def _claim(d: dict[str, Any], where: str) -> ClaimDesign:
    known = {f for f in ClaimDesign.__dataclass_fields__}
    unknown = sorted(set(d) - known)
    if unknown:
        raise DesignError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    c = ClaimDesign(
        claim=_need(d, "claim", int, where),
        statement=_need(d, "statement", str, where),
        test=_need(d, "test", str, where),
        study=_need(d, "study", str, where),
        param=_need(d, "param", str, where),
        sparsities=_floats(d, "sparsities", where),
        direction=_need(d, "direction", str, where),
        sesoi=float(_need(d, "sesoi", (int, float), where)),
        margin=float(_need(d, "margin", (int, float), where)),
        unit=_need(d, "unit", str, where),
        seeds=_need(d, "seeds", int, where),
        better=_floats(d, "better", where),
        worse=_floats(d, "worse", where),
        levels=_floats(d, "levels", where),
        across=d.get("across", "every"),
        rationale=d.get("rationale", ""),
        secondary=d.get("secondary", ""),
    )
    check_int(f"{where}: claim", c.claim, 1, 6, DesignError)
    check_choice(f"{where}: test", c.test, TESTS, DesignError)
    check_choice(f"{where}: param", c.param, _PARAMS, DesignError)
    check_choice(f"{where}: direction", c.direction, _DIRECTIONS, DesignError)
    check_choice(f"{where}: across", c.across, _ACROSS, DesignError)
    check_real(f"{where}: sesoi", c.sesoi, 0, None, DesignError, lo_open=True)
    check_real(f"{where}: margin", c.margin, c.sesoi, None, DesignError, "at least the SESOI")
    check_int(f"{where}: seeds", c.seeds, 2, None, DesignError)
    if not c.sparsities:
        raise DesignError(f"{where}: sparsities is empty; name the cells' sparsities")
    if c.test == "curvature":
        if len(set(c.levels)) < 3:
            raise DesignError(f"{where}: a curvature needs 3 or more distinct levels, got {list(c.levels)}")
    elif not c.better or not c.worse or set(c.better) & set(c.worse):
        raise DesignError(f"{where}: better and worse must be non-empty and disjoint, got {c.better} and {c.worse}")
    if c.test in ("difference", "curvature") and len(c.sparsities) != 2:
        raise DesignError(f"{where}: a {c.test} compares exactly two sparsities (dense first), got {c.sparsities}")
    return c


def load_design(name_or_path: str | Path) -> Design:
    """Read and validate a design file (a name under ``analysis/studies/`` or a path).

    Raises
    ------
    DesignError
        On a missing file, invalid TOML, an unknown, missing or ill-typed field, a claim twice, or
        a value out of range (the message names the field and the fix).
    """
    import tomllib

    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = DESIGN_DIR / f"{name_or_path}.toml"
    where = str(path)
    try:
        d = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DesignError(f"{where}: no such design file") from None
    except tomllib.TOMLDecodeError as e:
        raise DesignError(f"{where}: invalid TOML: {e}") from None
    if d.get("version") != 1:
        raise DesignError(f"{where}: version {d.get('version')!r} is not supported; this reader reads version 1")
    known = {"version", "name", "description", "profile", "alpha", "power", "stuck_below", "pilot", "aggregation"}
    unknown = sorted(set(d) - known - {"claims"})
    if unknown:
        raise DesignError(f"{where}: unknown field(s) {unknown}; known: {sorted(known | {'claims'})}")
    claims = tuple(_claim(c, f"{where}: claims[{i}]") for i, c in enumerate(_need(d, "claims", list, where)))
    numbers = [c.claim for c in claims]
    if len(set(numbers)) != len(numbers):
        raise DesignError(f"{where}: each claim once, got claims {numbers}")
    design = Design(
        name=_need(d, "name", str, where),
        description=_need(d, "description", str, where),
        profile=_need(d, "profile", str, where),
        alpha=float(_need(d, "alpha", float, where)),
        power=float(_need(d, "power", float, where)),
        stuck_below=float(_need(d, "stuck_below", float, where)),
        pilot=_need(d, "pilot", str, where),
        aggregation=_need(d, "aggregation", str, where).strip(),
        claims=claims,
    )
    if design.name != path.stem:
        raise DesignError(f"{where}: name {design.name!r} must equal the file's stem {path.stem!r}")
    check_real(f"{where}: alpha", design.alpha, 0, 0.5, DesignError, lo_open=True, hi_open=True)
    check_real(f"{where}: power", design.power, 0, 1, DesignError, lo_open=True, hi_open=True)
    check_real(f"{where}: stuck_below", design.stuck_below, 0, 1, DesignError)
    return design


def pilot_path(design: Design, dataset: str) -> Path:
    """Where ``design``'s pilot results of ``dataset`` are (``design.pilot`` under the repository)."""
    return REPO / design.pilot.format(dataset=dataset)


def read_pilot(design: Design, dataset: str) -> list[dict[str, Any]]:
    """The pilot's rows (``results.csv`` as dicts of strings), or [] when it is not there."""
    import csv

    path = pilot_path(design, dataset)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
