"""Learning-rate selection on a validation split, by a rule stated before the runs (issue 21, item 1).

Every arm of the tuned optimizer controls (SGD, SGD + load-normalized, Adam, ...) gets its learning
rate the same way: train each learning rate of a grid stated in advance on a few *tuning* seeds,
with a validation split held out of the training set (``TrainConfig.val_fraction`` /
``val_split``), and apply :class:`TuningRule`:

1. a run *diverged* when any epoch's training or validation loss, or its validation accuracy, is
   not finite; a learning rate with a diverged run on any tuning seed is excluded (the confirmatory
   runs train 10-20 seeds at the chosen rate: a rate that diverges on one tuning seed in a few is
   not safe there);
2. each remaining learning rate's score is the mean over tuning seeds of the run's best-epoch
   validation accuracy (the maximum over its epochs);
3. the chosen rate is the smallest of those whose score is within ``tie_tolerance`` of the best
   score (a smaller step is the conservative choice when the validation split cannot tell them
   apart);
4. a chosen rate at either end of the grid is flagged (``edge``): the optimum may lie outside the
   grid, and the report says so.

:func:`select_lr` applies the rule to one arm at one tuning condition (e.g. the balanced map,
alpha = 1000); :func:`select_all` to every (arm, condition) of a list of curves. The tuning stage of
``studies/controls_tuned.toml`` runs as the profile ``controls-tuning`` (study ``controls_tuning``:
every arm at every rate of its grid, 10% of the training set held out at random), and
``python -m analysis.tuning --out DIR`` reads its records (:func:`curves_from_records`), applies the
design's rule (:func:`design_tuning`) and writes ``DIR/tuning.json`` and ``DIR/TUNING.md``. Nothing here trains
or imports torch; :meth:`TuningCurve.from_result` reads a :class:`~trainers.torch_backend.results.TrainResult`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.io.atomic import atomic_write_json, atomic_write_text
from trainers.torch_backend.results import TrainResult  # plain dataclasses, no torch

__all__ = [
    "TuningError",
    "TuningRule",
    "TuningCurve",
    "LRScore",
    "LRSelection",
    "select_lr",
    "select_all",
    "design_tuning",
    "curves_from_records",
    "write_selection",
    "main",
]


class TuningError(ValueError):
    """Tuning curves that the rule cannot be applied to; the message names what is missing and the fix."""


@dataclass(frozen=True)
class TuningRule:
    """The learning-rate selection rule, stated before the runs (see the module docstring).

    Parameters
    ----------
    tie_tolerance : float
        Scores within this much of the best (validation accuracy, a fraction: 0.001 = 0.1 pp) are
        tied; the smallest tied learning rate is chosen. >= 0.
    min_seeds : int
        Tuning seeds every learning rate of the grid must have, >= 1.
    version : int
        Raised when the rule's meaning changes (a selection records the rule it applied).

    Raises
    ------
    TuningError
        On a negative or non-finite ``tie_tolerance`` or ``min_seeds < 1``.
    """

    tie_tolerance: float = 0.001
    min_seeds: int = 2
    version: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.tie_tolerance, (int, float)) and math.isfinite(self.tie_tolerance)):
            raise TuningError(f"tie_tolerance must be a finite number >= 0, got {self.tie_tolerance!r}")
        if self.tie_tolerance < 0:
            raise TuningError(f"tie_tolerance must be >= 0 (0: exact ties only), got {self.tie_tolerance}")
        if not isinstance(self.min_seeds, int) or isinstance(self.min_seeds, bool) or self.min_seeds < 1:
            raise TuningError(f"min_seeds must be an integer >= 1, got {self.min_seeds!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "score": "mean over tuning seeds of the best-epoch validation accuracy",
            "diverged": "any non-finite train loss, validation loss or validation accuracy; excludes the lr",
            "tie_tolerance": self.tie_tolerance,
            "tie_break": "smallest lr",
            "min_seeds": self.min_seeds,
        }


@dataclass(frozen=True)
class TuningCurve:
    """One tuning run's per-epoch validation curve.

    Parameters
    ----------
    arm : str
        The arm's label, e.g. ``"sgd/load"``.
    lr : float
        Initial learning rate, > 0.
    seed : int
        Tuning seed (the run's train seed; with ``val_split="random"`` it also draws the held-out set).
    val_accuracy : sequence of float, length epochs >= 1
        Validation accuracy after each epoch, a fraction in [0, 1] (NaN allowed: a diverged run).
    train_loss, val_loss : sequence of float, length epochs
        Per epoch; any non-finite value marks the run diverged.
    condition : str
        The tuning condition, e.g. ``"alpha=1000"`` (the rule is applied per arm and condition).

    Raises
    ------
    TuningError
        On unequal lengths, no epochs, or a non-positive learning rate.
    """

    arm: str
    lr: float
    seed: int
    val_accuracy: tuple[float, ...]
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    condition: str = ""

    def __post_init__(self) -> None:
        n = len(self.val_accuracy)
        if n == 0:
            raise TuningError(f"{self._name()}: no epochs; a tuning curve needs at least one validation point")
        if len(self.train_loss) != n or len(self.val_loss) != n:
            raise TuningError(
                f"{self._name()}: val_accuracy, train_loss and val_loss must have one value per epoch, got "
                f"{n}, {len(self.train_loss)} and {len(self.val_loss)}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TuningError(f"{self._name()}: lr must be a finite number > 0, got {self.lr}")

    def _name(self) -> str:
        return f"curve (arm {self.arm!r}, condition {self.condition!r}, lr {self.lr:g}, seed {self.seed})"

    @property
    def diverged(self) -> bool:
        """Any epoch's training loss, validation loss or validation accuracy is not finite."""
        values = np.array([*self.train_loss, *self.val_loss, *self.val_accuracy], dtype=np.float64)
        return not bool(np.isfinite(values).all())

    @property
    def best(self) -> float:
        """The best-epoch validation accuracy (NaN for a diverged run)."""
        return math.nan if self.diverged else float(max(self.val_accuracy))

    @classmethod
    def from_result(cls, arm: str, result: TrainResult, condition: str = "") -> TuningCurve:
        """The curve of a :class:`~trainers.torch_backend.results.TrainResult` trained with a validation split.

        Raises
        ------
        TuningError
            If the run had no validation split (``val_fraction = 0``).
        """
        eps = result.epochs
        if not eps or any(e.val_accuracy is None or e.val_loss is None for e in eps):
            raise TuningError(
                f"arm {arm!r}, lr {result.config.lr:g}, seed {result.config.seed}: the run has no validation "
                "curve; train it with val_fraction > 0 (the design holds out 0.1)"
            )
        return cls(
            arm=arm,
            lr=result.config.lr,
            seed=result.config.seed,
            val_accuracy=tuple(float(e.val_accuracy) for e in eps),  # type: ignore[arg-type]  # checked above
            train_loss=tuple(float(e.train_loss) for e in eps),
            val_loss=tuple(float(e.val_loss) for e in eps),  # type: ignore[arg-type]
            condition=condition,
        )


@dataclass(frozen=True)
class LRScore:
    """One learning rate's line of the tuning table: score (mean best-epoch validation accuracy), SD, seeds."""

    lr: float
    score: float
    sd: float
    seeds: int
    diverged: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "score": None if math.isnan(self.score) else self.score,
            "sd": None if math.isnan(self.sd) else self.sd,
            "seeds": self.seeds,
            "diverged": self.diverged,
        }


@dataclass(frozen=True)
class LRSelection:
    """The rule's choice for one arm at one tuning condition, and the table it rests on.

    Attributes
    ----------
    arm, condition : str
    grid : tuple of float
        The learning rates stated in advance, increasing.
    lr : float or None
        The chosen rate; None when every rate diverged.
    tied : tuple of float
        The rates within ``rule.tie_tolerance`` of the best score (``lr`` is the smallest).
    edge : {"low", "high"} or None
        ``lr`` is the grid's smallest or largest rate: the optimum may lie outside the grid.
    table : tuple of LRScore
        Every rate of the grid, in grid order.
    rule : TuningRule
    """

    arm: str
    condition: str
    grid: tuple[float, ...]
    lr: float | None
    tied: tuple[float, ...]
    edge: str | None
    table: tuple[LRScore, ...]
    rule: TuningRule = field(default_factory=TuningRule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "condition": self.condition,
            "grid": list(self.grid),
            "lr": self.lr,
            "tied": list(self.tied),
            "edge": self.edge,
            "table": [s.to_dict() for s in self.table],
            "rule": self.rule.to_dict(),
        }


def select_lr(curves: Sequence[TuningCurve], grid: Sequence[float], rule: TuningRule | None = None) -> LRSelection:
    """Apply ``rule`` to the tuning curves of one arm at one condition.

    Parameters
    ----------
    curves : sequence of TuningCurve
        One per (learning rate, tuning seed), all of one ``arm`` and ``condition``.
    grid : sequence of float
        The learning rates stated in advance (any order, no repeats).
    rule : TuningRule, optional
        Default: ``TuningRule()`` (tie tolerance 0.1 pp, at least 2 seeds).

    Returns
    -------
    LRSelection

    Raises
    ------
    TuningError
        If the curves mix arms or conditions, a curve's rate is not in the grid, a (rate, seed)
        appears twice, or a rate of the grid lacks curves for some tuning seed or has fewer than
        ``rule.min_seeds``.
    """
    rule = TuningRule() if rule is None else rule
    if not curves:
        raise TuningError("select_lr got no curves; train every lr of the grid on the tuning seeds first")
    grid_t = tuple(sorted(float(x) for x in grid))
    if not grid_t or len(set(grid_t)) != len(grid_t):
        raise TuningError(f"the grid must be a non-empty list of distinct learning rates, got {list(grid)}")
    arms, conds = {c.arm for c in curves}, {c.condition for c in curves}
    if len(arms) != 1 or len(conds) != 1:
        raise TuningError(
            f"select_lr takes one arm at one condition, got arms {sorted(arms)} and conditions {sorted(conds)}; "
            "use select_all for several"
        )
    by_lr: dict[float, dict[int, TuningCurve]] = defaultdict(dict)
    for c in curves:
        if c.lr not in grid_t:
            raise TuningError(f"{c._name()}: lr {c.lr:g} is not in the grid {list(grid_t)} stated in advance")
        if c.seed in by_lr[c.lr]:
            raise TuningError(f"{c._name()}: a second curve for the same lr and seed")
        by_lr[c.lr][c.seed] = c
    seeds = set().union(*(set(d) for d in by_lr.values()))
    for lr in grid_t:
        missing = sorted(seeds - set(by_lr.get(lr, {})))
        if missing or len(by_lr.get(lr, {})) < rule.min_seeds:
            raise TuningError(
                f"arm {next(iter(arms))!r}, condition {next(iter(conds))!r}: lr {lr:g} has "
                f"{len(by_lr.get(lr, {}))} tuning runs (missing seeds {missing}); every lr of the grid needs "
                f"the same tuning seeds, at least {rule.min_seeds}: run the missing ones"
            )
    table = []
    for lr in grid_t:
        runs = list(by_lr[lr].values())
        n_div = sum(c.diverged for c in runs)
        best = np.array([c.best for c in runs])
        if n_div:
            table.append(LRScore(lr, math.nan, math.nan, len(runs), n_div))
        else:
            sd = float(best.std(ddof=1)) if best.size > 1 else math.nan
            table.append(LRScore(lr, float(best.mean()), sd, len(runs), 0))
    usable = [s for s in table if s.diverged == 0]
    if not usable:
        return LRSelection(next(iter(arms)), next(iter(conds)), grid_t, None, (), None, tuple(table), rule)
    top = max(s.score for s in usable)
    tied = tuple(s.lr for s in usable if s.score >= top - rule.tie_tolerance)
    chosen = min(tied)
    edge = "low" if chosen == grid_t[0] else "high" if chosen == grid_t[-1] else None
    if len(grid_t) == 1:
        edge = None  # a one-point grid has no inside
    return LRSelection(next(iter(arms)), next(iter(conds)), grid_t, chosen, tied, edge, tuple(table), rule)


def select_all(
    curves: Sequence[TuningCurve], grids: Mapping[str, Sequence[float]], rule: TuningRule | None = None
) -> list[LRSelection]:
    """:func:`select_lr` for every (arm, condition) of ``curves``, in sorted order.

    Parameters
    ----------
    curves : sequence of TuningCurve
    grids : dict of str to sequence of float
        Per arm label, its grid stated in advance.

    Raises
    ------
    TuningError
        If an arm of the curves has no grid, or as :func:`select_lr`.
    """
    groups: dict[tuple[str, str], list[TuningCurve]] = defaultdict(list)
    for c in curves:
        groups[(c.arm, c.condition)].append(c)
    missing = sorted({arm for arm, _ in groups} - set(grids))
    if missing:
        raise TuningError(f"no grid stated for arms {missing}; give each arm its grid (the design's [[tuning.arms]])")
    return [select_lr(groups[k], grids[k[0]], rule) for k in sorted(groups)]


# --------------------------------------------------------------------------- stage 1 of a design, from run records
DESIGN = Path(__file__).resolve().parent / "studies" / "controls_tuned.toml"


def design_tuning(path: str | Path = DESIGN) -> tuple[TuningRule, dict[str, tuple[float, ...]]]:
    """The selection rule and each arm's grid (``"optimizer/table_grad_scale"``) of a design's ``[tuning]`` table.

    Raises
    ------
    TuningError
        If the file has no ``[tuning]`` table with ``[[tuning.arms]]`` (each with ``optimizer``,
        ``table_grad_scale`` and a ``grid``), or its rule is invalid.
    """
    with open(path, "rb") as f:
        d = tomllib.load(f)
    t = d.get("tuning")
    if not isinstance(t, dict) or not t.get("arms"):
        raise TuningError(f"{path}: no [tuning] table with [[tuning.arms]]; is it a tuned-controls design?")
    try:
        grids = {f"{a['optimizer']}/{a['table_grad_scale']}": tuple(float(x) for x in a["grid"]) for a in t["arms"]}
    except (KeyError, TypeError, ValueError) as e:
        raise TuningError(f"{path}: every [[tuning.arms]] needs optimizer, table_grad_scale and grid ({e})") from None
    rule = TuningRule(tie_tolerance=float(t.get("tie_tolerance", 0.001)), min_seeds=int(t.get("min_seeds", 2)))
    return rule, grids


def curves_from_records(out: str | Path) -> list[TuningCurve]:
    """The tuning curve of every run record under ``out/runs`` that held out a validation split.

    A record's arm is ``"optimizer/table_grad_scale"`` and its condition ``"alpha=<alpha>"`` (the tuning
    stage's two maps; the map's kind for a map without an alpha); records without a validation split
    (``val_fraction`` unset) are not tuning runs and are skipped.

    Raises
    ------
    TuningError
        If ``out/runs`` holds no tuning record.
    """
    curves = []
    for path in sorted(Path(out, "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        run, res = rec["run"], rec["results"]
        if not run.get("val_fraction"):
            continue
        arm = f"{run['optimizer']}/{run['table_grad_scale']}"
        condition = f"alpha={run['alpha']:g}" if run.get("alpha") is not None else str(run["kind"])
        curves.append(TuningCurve.from_result(arm, TrainResult.from_dict(res), condition))
    if not curves:
        raise TuningError(
            f"{out}/runs holds no run with a validation split; run the tuning stage first "
            "(python -m analysis.reproduce --profile controls-tuning --out DIR)"
        )
    return curves


def write_selection(out: str | Path, selections: Sequence[LRSelection], design: str | Path) -> tuple[Path, Path]:
    """``out/tuning.json`` (every selection with its table and rule) and ``out/TUNING.md`` (the tuning table)."""
    out = Path(out)
    data = {"design": str(design), "selections": [s.to_dict() for s in selections]}
    atomic_write_json(out / "tuning.json", data)
    lines = [
        "# Tuning stage: learning rates chosen on the validation split",
        "",
        f"Design: `{Path(design).name}`; rule: mean over tuning seeds of the best-epoch validation accuracy, an lr "
        "with a diverged seed excluded, ties within the tolerance to the smallest lr, a choice at the grid's edge "
        "flagged. Generated by `python -m analysis.tuning`; do not edit.",
        "",
        "| arm | condition | lr | score (val. acc. %) | SD | seeds | diverged | chosen |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in selections:
        for row in s.table:
            score = "n/a" if math.isnan(row.score) else f"{100 * row.score:.2f}"
            sd = "n/a" if math.isnan(row.sd) else f"{100 * row.sd:.2f}"
            mark = ("**yes**" + (f" (edge: {s.edge})" if s.edge else "")) if row.lr == s.lr else ""
            lines.append(
                f"| {s.arm} | {s.condition} | {row.lr:g} | {score} | {sd} | {row.seeds} | {row.diverged} | {mark} |"
            )
    md = out / "TUNING.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    return out / "tuning.json", md


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.tuning --out DIR``: apply a design's selection rule to the tuning runs in DIR."""
    p = argparse.ArgumentParser(
        prog="python -m analysis.tuning",
        description="Choose each control arm's learning rate from the tuning stage's validation curves by the "
        "rule the design states (writes DIR/tuning.json and DIR/TUNING.md).",
    )
    p.add_argument("--out", required=True, help="the tuning stage's reproduction folder (its runs/*.json records)")
    p.add_argument("--design", default=str(DESIGN), help=f"the design file (default: {DESIGN.name})")
    args = p.parse_args(argv)
    try:
        rule, grids = design_tuning(args.design)
        selections = select_all(curves_from_records(args.out), grids, rule)
    except (TuningError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_selection(args.out, selections, args.design)
    for s in selections:
        print(f"{s.arm:16s} {s.condition:12s} lr = {s.lr}" + (f"  (edge: {s.edge})" if s.edge else ""))
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
