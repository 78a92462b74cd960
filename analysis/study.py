"""Studies and profiles of the paper reproduction, as typed, versioned TOML configs.

A *study* (``analysis/studies/<name>.toml``, read with :mod:`tomllib`) is a grid of map variants
(one hash kind swept over ``alpha`` or ``radius``, or an explicit list of variants) crossed with
sparsities, on the paper's MLP for a dataset with one ``table_size``-entry table per layer
(Chang & Lipson 2018, section 4.3). A version-2 study may also cross its grid with training
*arms* (optimizer, learning rate, ``table_grad_scale``): the optimizer controls of the balance
study; an arm with the paper's recipe can ``reuse`` another study's runs instead of repeating them.
A *profile* (``profiles.toml``) says which studies run, with
which paired seeds and how long each run trains. :func:`plan` expands a profile into the list of
:class:`~analysis.runs.RunConfig`, each one training run.

Nothing here trains or imports torch.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from hashlab import Architecture, HashSpec, SpecError
from hashlab.configs import check_choice, check_int, check_real

from .runs import ARCH_OF_DATASET, RunConfig

__all__ = [
    "StudyError",
    "Variant",
    "Arm",
    "PAPER_ARM",
    "Study",
    "Profile",
    "STUDY_DIR",
    "load_study",
    "load_profiles",
    "plan",
]

STUDY_DIR = Path(__file__).resolve().parent / "studies"
"""The study and profile files (package data of ``analysis``: ``studies/*.toml``)."""
_SWEEPS = {"dirichlet": "alpha", "neighborhood": "radius"}


class StudyError(ValueError):
    """A study or profile file is invalid; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Variant:
    """One map family point: a hash kind and its parameters (``HashSpec`` fields), and optionally
    its own budget (``compression``, ``hash_bias``) and architecture (``arch``, e.g. the plain
    network of equal parameter count that HashedNets compares against)."""

    kind: str
    alpha: float | None = None
    radius: int | None = None
    sign: bool = False
    compression: str | None = None
    hash_bias: bool = False
    arch: str | None = None


@dataclass(frozen=True)
class Arm:
    """One training recipe of a study (``TrainConfig`` fields; the rest is the paper's recipe).

    Parameters
    ----------
    optimizer : {"sgd", "adam", "adamw"}
    lr : float
        Initial learning rate (the paper's SGD: 0.1; Adam's usual 1e-3, Kingma & Ba 2015).
    table_grad_scale : {"none", "load", "sqrt_load", "load_hot", "load_cold"}
        Per-entry gradient scaling by load (``TrainConfig.table_grad_scale``).
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    table_grad_scale: str = "none"

    @property
    def label(self) -> str:
        """Short name, e.g. ``"sgd/none"``."""
        return f"{self.optimizer}/{self.table_grad_scale}"


PAPER_ARM = Arm()
"""The paper's recipe: SGD lr 0.1 (momentum 0.9), no gradient scaling."""


@dataclass(frozen=True)
class Study:
    """One study: map variants x sparsities (paper section 4.3).

    Parameters
    ----------
    name : str
        Identifier, also the TOML file's stem.
    description : str
    claims : tuple of int
        Which of the paper's claims (1-6, see ``analysis.claims.CLAIMS``) this study tests.
    variants : tuple of Variant
        The map variants, in the order of the swept parameter.
    sparsities : tuple of float
        Each in [0, 1).
    table_size : int
        Entries per layer's table (the paper: 1000).
    sweep : {"alpha", "radius"} or None
        The swept parameter, when the variants are one kind at several values.
    epochs_factor : int
        Runs of this study train ``epochs_factor`` times the profile's epochs (the epochs
        sensitivity study); 1 otherwise.
    arms : tuple of Arm
        Training recipes crossed with the grid (version 2); ``(PAPER_ARM,)`` otherwise.
    reuse : str or None
        A study of the same kind whose runs *are* this study's :data:`PAPER_ARM` runs (same map,
        same recipe, so the same result): they are planned under that study's name and trained
        once. A profile must run ``reuse`` over a grid that contains this study's.
    arch : str or None
        MLP layer sizes for every variant without its own (version 2); None: the dataset's paper MLP.
    recipe : str
        Training recipe (``trainers.torch_backend.config.RECIPES``; version 2): ``"paper"`` or
        ``"hashednets"``; its momentum, LR factor and patience become the runs' (their keys show them).
    epochs, batch_size : int or None
        The study's own training length and mini-batch size (version 2), replacing the profile's
        (a study that reproduces another paper's recipe, e.g. HashedNets' 50 epochs of batch 50).
    replicates : int or None
        Version 3: run only the profile's first ``replicates`` seed pairs (a confirmatory design
        gives each study the seeds its power analysis asks for); None: all of them.
    seeding : {"paired", "crossed"}
        Version 3: ``"paired"`` (default): replicate ``i`` uses train seed ``i`` and hash seed ``i``
        of the profile; ``"crossed"``: every one of the first ``replicates`` train seeds with every
        one of the first ``replicates`` hash seeds (``replicates`` squared runs per grid point),
        so map-to-map and training variance can be told apart.
    version : int
        Schema version, 1, 2 or 3 (2 adds ``arms``, ``reuse``, ``arch``, ``recipe``, ``epochs``,
        ``batch_size`` and the variants' ``compression``, ``hash_bias``, ``arch``; 3 adds
        ``replicates`` and ``seeding``).
    """

    name: str
    description: str
    claims: tuple[int, ...]
    variants: tuple[Variant, ...]
    sparsities: tuple[float, ...]
    table_size: int = 1000
    sweep: str | None = None
    epochs_factor: int = 1
    arms: tuple[Arm, ...] = (PAPER_ARM,)
    reuse: str | None = None
    arch: str | None = None
    recipe: str = "paper"
    epochs: int | None = None
    batch_size: int | None = None
    replicates: int | None = None
    seeding: str = "paired"
    version: int = 1

    def seed_pairs(self, train_seeds: tuple[int, ...], hash_seeds: tuple[int, ...]) -> list[tuple[int, int]]:
        """The ``(train_seed, hash_seed)`` pairs this study runs at each grid point, from a profile's seeds.

        Raises
        ------
        StudyError
            If the profile has fewer seed pairs than ``replicates``.
        """
        n = len(train_seeds) if self.replicates is None else self.replicates
        if n > len(train_seeds):
            raise StudyError(
                f"study {self.name!r} needs {n} replicates but the profile has {len(train_seeds)} seed pairs; "
                "add seeds to the profile"
            )
        if self.seeding == "crossed":
            return [(t, h) for h in hash_seeds[:n] for t in train_seeds[:n]]
        return list(zip(train_seeds[:n], hash_seeds[:n]))

    def restricted(self, values: list[float] | None, sparsities: list[float] | None) -> Study:
        """The same study on a subset of its grid (a profile's ``values`` / ``sparsities``)."""
        variants = self.variants
        if values is not None:
            if self.sweep is None:
                raise StudyError(f"study {self.name!r} has explicit variants; a profile cannot restrict its values")
            have = {getattr(v, self.sweep) for v in variants}
            missing = [x for x in values if x not in have]
            if missing:
                raise StudyError(
                    f"profile restricts study {self.name!r} to {self.sweep} values {missing} that the "
                    f"study does not have; choose from {sorted(have)}"
                )
            variants = tuple(v for v in variants if getattr(v, self.sweep) in values)
        sp = self.sparsities if sparsities is None else tuple(float(s) for s in sparsities)
        return dataclasses.replace(self, variants=variants, sparsities=sp)


@dataclass(frozen=True)
class Profile:
    """How much of the reproduction to run: studies, paired seeds, training length.

    Parameters
    ----------
    name, description : str
    studies : tuple of str
        Study names (``analysis/studies/<name>.toml``).
    train_seeds, hash_seeds : tuple of int
        Replicate ``i`` trains with ``train_seeds[i]`` (table init and data order) on maps built
        with ``hash_seeds[i]``; equal lengths, >= 1, no repeats.
    epochs, batch_size : int
        Training length and mini-batch size (SGD lr 0.1, momentum 0.9, plateau LR / 10 after 4
        epochs without a gain in training accuracy, as in the paper).
    limit_train : int or None
        Train on the first ``limit_train`` samples only (smoke profile).
    values : dict of str to list of float
        Per study, the subset of its swept values to run.
    sparsities : tuple of float or None
        The subset of every study's sparsities to run.
    stop_after_drops, stop_patience : int or None, int
        The stopping rule of every run (``TrainConfig.stop_after_drops``); ``epochs`` is then the cap.
    design : str or None
        The pre-registered confirmatory design (``analysis/studies/<design>.toml``,
        :func:`analysis.design.load_design`) the profile's runs answer; its report replaces the
        exploratory one.
    val_fraction, val_split : float, str or None
        Hold out a validation split in every run (``TrainConfig.val_fraction`` / ``val_split``: a
        tuning stage); None: the recipe's (the paper's: none).
    order : {"study", "replicate"}
        The order runs are planned (and run) in: study by study (default), or replicate by
        replicate, so that a partial run of a long profile has whole seeds across every cell.
    """

    name: str
    description: str
    studies: tuple[str, ...]
    train_seeds: tuple[int, ...]
    hash_seeds: tuple[int, ...]
    epochs: int
    batch_size: int = 200
    limit_train: int | None = None
    values: dict[str, list[float]] = field(default_factory=dict)
    sparsities: tuple[float, ...] | None = None
    stop_after_drops: int | None = None
    stop_patience: int = 4
    design: str | None = None
    order: str = "study"
    val_fraction: float | None = None
    val_split: str | None = None


def _need(d: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise StudyError(f"{where}: missing field {key!r}")
    v = d[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
        raise StudyError(f"{where}: field {key!r} has the wrong type ({type(v).__name__}: {v!r})")
    return v


def _check_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise StudyError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(allowed)}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise StudyError(
            f"no study file {path}; studies are {sorted(p.stem for p in STUDY_DIR.glob('*.toml'))}"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path}: not valid TOML ({e})") from None


def load_study(name_or_path: str | Path) -> Study:
    """Read and validate a study file (a name under ``analysis/studies/`` or a path).

    Raises
    ------
    StudyError
        On a missing file, invalid TOML, an unknown or ill-typed field, or a variant that
        ``HashSpec`` rejects (every variant is validated at every sparsity here, before any run).
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = STUDY_DIR / f"{name_or_path}.toml"
    d = _read_toml(path)
    where = str(path)
    version = d.get("version")
    if version not in (1, 2, 3):
        raise StudyError(f"{where}: version {version!r} is not supported; this reader reads versions 1, 2 and 3")
    _check_keys(
        d,
        {
            "version",
            "name",
            "description",
            "claims",
            "kind",
            "sweep",
            "values",
            "variants",
            "sparsities",
            "table_size",
            "epochs_factor",
        }
        | ({"arms", "reuse", "arch", "recipe", "epochs", "batch_size"} if version >= 2 else set())
        | ({"replicates", "seeding"} if version >= 3 else set()),
        where,
    )
    name = _need(d, "name", str, where)
    if name != path.stem:
        raise StudyError(f"{where}: name {name!r} must equal the file's stem {path.stem!r}")
    if "variants" in d:
        if "sweep" in d or "values" in d or "kind" in d:
            raise StudyError(f"{where}: give either kind + sweep + values, or [[variants]], not both")
        raw = _need(d, "variants", list, where)
        variants = []
        for i, v in enumerate(raw):
            _check_keys(
                v,
                {"kind", "alpha", "radius", "sign"} | ({"compression", "hash_bias", "arch"} if version >= 2 else set()),
                f"{where}: variants[{i}]",
            )
            variants.append(
                Variant(
                    kind=_need(v, "kind", str, f"{where}: variants[{i}]"),
                    alpha=v.get("alpha"),
                    radius=v.get("radius"),
                    sign=v.get("sign", False),
                    compression=v.get("compression"),
                    hash_bias=v.get("hash_bias", False),
                    arch=v.get("arch"),
                )
            )
        sweep = None
    else:
        kind = _need(d, "kind", str, where)
        sweep = _need(d, "sweep", str, where)
        if _SWEEPS.get(kind) != sweep:
            raise StudyError(
                f"{where}: kind {kind!r} cannot sweep {sweep!r}; "
                + ", ".join(f"{k} sweeps {p}" for k, p in _SWEEPS.items())
            )
        values = _need(d, "values", list, where)
        if not values or len(set(values)) != len(values):
            raise StudyError(f"{where}: values must be a non-empty list without repeats, got {values}")
        variants = [
            Variant(kind=kind, alpha=float(x)) if sweep == "alpha" else Variant(kind=kind, radius=x) for x in values
        ]
    sparsities = tuple(float(s) for s in _need(d, "sparsities", list, where))
    if not sparsities:
        raise StudyError(f"{where}: sparsities is empty; give at least one, e.g. [0]")
    arms, reuse = _read_arms(d, where)
    study = Study(
        name=name,
        description=_need(d, "description", str, where),
        claims=tuple(_need(d, "claims", list, where)),
        variants=tuple(variants),
        sparsities=sparsities,
        table_size=d.get("table_size", 1000),
        sweep=sweep,
        epochs_factor=d.get("epochs_factor", 1),
        arms=arms,
        reuse=reuse,
        arch=d.get("arch"),
        recipe=d.get("recipe", "paper"),
        epochs=d.get("epochs"),
        batch_size=d.get("batch_size"),
        replicates=d.get("replicates"),
        seeding=d.get("seeding", "paired"),
        version=version,
    )
    for v in study.variants:  # HashSpec validates every grid point before any work is done
        budget = {"table_size": study.table_size} if v.compression is None else {"compression": v.compression}
        for s in study.sparsities:
            try:
                HashSpec(
                    kind=cast(Any, v.kind),
                    alpha=v.alpha,  # a str from the file: HashSpec checks it
                    radius=v.radius,
                    sign=v.sign,
                    sparsity=s,
                    hash_bias=v.hash_bias,
                    **budget,
                )
            except SpecError as e:
                raise StudyError(f"{where}: variant {v} at sparsity {s}: {e}") from None
        arch = v.arch or study.arch
        try:
            if arch is not None:
                Architecture.parse(arch)
        except (SpecError, ValueError) as e:
            raise StudyError(f"{where}: variant {v}: architecture {arch!r}: {e}") from None
    check_choice(f"{where}: recipe", study.recipe, _recipes(), StudyError)
    for name in ("epochs", "batch_size"):
        if getattr(study, name) is not None:
            check_int(f"{where}: {name}", getattr(study, name), 1, None, StudyError)
    check_int(f"{where}: epochs_factor", study.epochs_factor, 1, None, StudyError)
    if study.replicates is not None:
        check_int(f"{where}: replicates", study.replicates, 1, None, StudyError)
    check_choice(f"{where}: seeding", study.seeding, ("paired", "crossed"), StudyError)
    if study.seeding == "crossed" and study.replicates is None:
        raise StudyError(f"{where}: seeding = 'crossed' needs replicates (e.g. 5: 5 hash seeds x 5 train seeds)")
    return study


def _recipes() -> dict[str, dict[str, Any]]:
    from trainers.torch_backend.config import RECIPES  # plain dicts, no torch

    return RECIPES


def _schedule(recipe: str) -> dict[str, Any]:
    """The recipe's momentum / LR factor / patience as run fields (the paper's where it has none)."""
    fields = {"momentum": 0.9, "lr_factor": 0.1, "lr_patience": 4}
    return {k: _recipes()[recipe].get(k, v) for k, v in fields.items()}


def _read_arms(d: dict[str, Any], where: str) -> tuple[tuple[Arm, ...], str | None]:
    """The ``[[arms]]`` and ``reuse`` of a version-2 study, validated against ``TrainConfig``'s choices."""
    from trainers.torch_backend.config import OPTIMIZERS, TABLE_GRAD_SCALES  # plain constants, no torch

    if "arms" not in d:
        if "reuse" in d:
            raise StudyError(f"{where}: reuse needs [[arms]] (the arm with the paper's recipe is the one reused)")
        return (PAPER_ARM,), None
    arms = []
    for i, a in enumerate(_need(d, "arms", list, where)):
        w = f"{where}: arms[{i}]"
        _check_keys(a, {"optimizer", "lr", "table_grad_scale"}, w)
        arm = Arm(
            optimizer=_need(a, "optimizer", str, w),
            lr=float(_need(a, "lr", (int, float), w)),
            table_grad_scale=_need(a, "table_grad_scale", str, w),
        )
        check_choice(f"{w}: optimizer", arm.optimizer, OPTIMIZERS, StudyError)
        check_choice(f"{w}: table_grad_scale", arm.table_grad_scale, TABLE_GRAD_SCALES, StudyError)
        check_real(f"{w}: lr", arm.lr, 0, None, StudyError, lo_open=True, finite=False)
        arms.append(arm)
    if not arms or len(set(arms)) != len(arms):
        raise StudyError(f"{where}: arms must be a non-empty list without repeats")
    reuse = d.get("reuse")
    if reuse is not None:
        if not isinstance(reuse, str):
            raise StudyError(f"{where}: reuse must be a study name, got {reuse!r}")
        if PAPER_ARM not in arms:
            raise StudyError(
                f"{where}: reuse={reuse!r} shares the paper's recipe (sgd, lr 0.1, table_grad_scale "
                f"none), but no arm has it; add that arm or drop reuse"
            )
    return tuple(arms), reuse


def _grid(study: Study) -> set[tuple[Variant, float]]:
    return {(v, s) for v in study.variants for s in study.sparsities}


def _restricted(profile: Profile, name: str) -> Study:
    study = load_study(name)
    sparsities = None if profile.sparsities is None else [s for s in profile.sparsities if s in study.sparsities]
    return study.restricted(profile.values.get(name), sparsities)


def load_profiles(path: str | Path | None = None) -> dict[str, Profile]:
    """Read and validate ``profiles.toml`` (or ``path``); every named study must load.

    Raises
    ------
    StudyError
        On any invalid field, naming the profile and the fix.
    """
    path = Path(path) if path is not None else STUDY_DIR / "profiles.toml"
    d = _read_toml(path)
    if d.pop("version", None) != 1:
        raise StudyError(f"{path}: version must be 1")
    profiles = {}
    for name, p in d.items():
        where = f"{path} [{name}]"
        _check_keys(
            p,
            {
                "description",
                "studies",
                "train_seeds",
                "hash_seeds",
                "epochs",
                "batch_size",
                "limit_train",
                "values",
                "sparsities",
                "stop_after_drops",
                "stop_patience",
                "design",
                "order",
                "val_fraction",
                "val_split",
            },
            where,
        )
        ts, hs = tuple(_need(p, "train_seeds", list, where)), tuple(_need(p, "hash_seeds", list, where))
        if not ts or len(ts) != len(hs) or len(set(ts)) != len(ts) or len(set(hs)) != len(hs):
            raise StudyError(
                f"{where}: train_seeds and hash_seeds must be non-empty lists of equal length without "
                f"repeats (replicate i uses both i-th seeds), got {list(ts)} and {list(hs)}"
            )
        epochs = check_int(f"{where}: epochs", _need(p, "epochs", int, where), 1, None, StudyError)
        prof = Profile(
            name=name,
            description=_need(p, "description", str, where),
            studies=tuple(_need(p, "studies", list, where)),
            train_seeds=ts,
            hash_seeds=hs,
            epochs=epochs,
            batch_size=p.get("batch_size", 200),
            limit_train=p.get("limit_train"),
            values=dict(p.get("values", {})),
            sparsities=None if "sparsities" not in p else tuple(float(s) for s in p["sparsities"]),
            stop_after_drops=p.get("stop_after_drops"),
            stop_patience=p.get("stop_patience", 4),
            design=p.get("design"),
            order=p.get("order", "study"),
            val_fraction=p.get("val_fraction"),
            val_split=p.get("val_split"),
        )
        if prof.val_fraction is not None and not (isinstance(prof.val_fraction, float) and 0 < prof.val_fraction < 1):
            raise StudyError(f"{where}: val_fraction must be a float in (0, 1), got {prof.val_fraction!r}")
        if prof.val_split is not None:
            check_choice(f"{where}: val_split", prof.val_split, ("last", "random"), StudyError)
        if prof.stop_after_drops is not None:
            check_int(f"{where}: stop_after_drops", prof.stop_after_drops, 1, None, StudyError)
        check_int(f"{where}: stop_patience", prof.stop_patience, 1, None, StudyError)
        check_choice(f"{where}: order", prof.order, ("study", "replicate"), StudyError)
        grids = {s: _restricted(prof, s) for s in prof.studies}  # loads and restricts each study once
        for study in grids.values():
            try:
                study.seed_pairs(prof.train_seeds, prof.hash_seeds)
            except StudyError as e:
                raise StudyError(f"{where}: {e}") from None
        if prof.design is not None:
            _check_design(prof, grids, where)
        unknown = sorted(set(prof.values) - set(prof.studies))
        if unknown:
            raise StudyError(f"{where}: values given for studies {unknown} that the profile does not run")
        for s, study in grids.items():
            if study.reuse is None:
                continue
            if study.reuse not in prof.studies:
                raise StudyError(
                    f"{where}: study {s!r} reuses the runs of {study.reuse!r}; add {study.reuse!r} to "
                    f"the profile's studies"
                )
            outside = _grid(study) - _grid(grids[study.reuse])
            if outside:
                raise StudyError(
                    f"{where}: study {s!r} reuses {study.reuse!r}, whose grid in this profile lacks "
                    f"{len(outside)} of its points (e.g. {sorted(outside, key=str)[0]}); restrict "
                    f"{s!r} to a subset of {study.reuse!r}'s values and sparsities"
                )
        profiles[name] = prof
    return profiles


def _check_design(profile: Profile, grids: dict[str, Study], where: str) -> None:
    """Raise StudyError unless ``profile`` runs every cell of its design with the seeds each claim needs."""
    from .design import DesignError, load_design

    assert profile.design is not None
    try:
        design = load_design(profile.design)
    except DesignError as e:
        raise StudyError(f"{where}: design: {e}") from None
    for c in design.claims:
        w = f"{where}: design {design.name!r} claim {c.claim}"
        if c.study not in grids:
            raise StudyError(f"{w}: the profile does not run study {c.study!r}; add it")
        study = grids[c.study]
        have = {(getattr(v, c.param), s) for v in study.variants for s in study.sparsities}
        missing = [cell for cell in c.cells if cell not in have]
        if missing:
            raise StudyError(f"{w}: study {c.study!r} lacks the cells ({c.param}, sparsity) {missing}; add them to it")
        n = len(study.seed_pairs(profile.train_seeds, profile.hash_seeds))
        if study.seeding != "paired" or n < c.seeds:
            raise StudyError(
                f"{w}: needs {c.seeds} paired seeds, study {c.study!r} runs {n} ({study.seeding}); "
                "raise its replicates or the profile's seeds"
            )


def plan(
    profile: Profile,
    dataset: str,
    *,
    data_root: str | None = None,
    device: str = "auto",
    studies: tuple[str, ...] | None = None,
    verify_md5: bool = True,
) -> list[RunConfig]:
    """Every run of ``profile`` on ``dataset``, in a stable order (study, arm, variant, sparsity,
    replicate; replicate first under ``profile.order == "replicate"``), each once (a run a study
    reuses from another is planned under the other's name).

    Parameters
    ----------
    profile : Profile
    dataset : {"mnist", "fashion-mnist", "cifar10"}
    data_root, device : str
        Recorded in each run (they are part of its key: a different data root is another run).
    studies : tuple of str, optional
        Only these of the profile's studies.
    verify_md5 : bool
        Check CIFAR-10 files against the official md5s (``TrainConfig.verify_md5``); False reads a
        rebuilt copy such as ``../shared/data``'s. Part of the key only when False, so every run
        planned with the default keeps the key it had before the option existed.

    Raises
    ------
    StudyError
        If ``dataset`` is unknown or ``studies`` names one the profile does not run.
    """
    if dataset not in ARCH_OF_DATASET:
        raise StudyError(f"unknown dataset {dataset!r}; choose one of {', '.join(ARCH_OF_DATASET)}")
    names = profile.studies if studies is None else tuple(studies)
    extra = sorted(set(names) - set(profile.studies))
    if extra:
        raise StudyError(f"profile {profile.name!r} does not run studies {extra}; it runs {list(profile.studies)}")
    runs: dict[str, RunConfig] = {}  # by key: a reused run is planned once
    rank: dict[str, int] = {}  # the replicate each run belongs to (order = "replicate")
    for name in names:
        study = _restricted(profile, name)
        seeds = study.seed_pairs(profile.train_seeds, profile.hash_seeds)
        for arm, v, s, (i, (ts, hs)) in itertools.product(
            study.arms, study.variants, study.sparsities, enumerate(seeds)
        ):
            owner = study.reuse if (study.reuse is not None and arm == PAPER_ARM) else study.name
            run = RunConfig.from_fields(
                dataset=dataset,
                study=owner,
                kind=v.kind,
                alpha=v.alpha,
                radius=v.radius,
                sign=v.sign,
                sparsity=s,
                table_size=study.table_size if v.compression is None else None,
                compression=v.compression,
                hash_bias=v.hash_bias,
                arch=v.arch or study.arch,
                recipe=study.recipe,
                hash_seed=hs,
                train_seed=ts,
                epochs=study.epochs or profile.epochs * study.epochs_factor,
                batch_size=study.batch_size or profile.batch_size,
                limit_train=profile.limit_train,
                data_root=data_root,
                device=device,
                optimizer=arm.optimizer,
                lr=arm.lr,
                table_grad_scale=arm.table_grad_scale,
                stop_after_drops=profile.stop_after_drops,
                stop_patience=profile.stop_patience,
                verify_md5=verify_md5,
                val_fraction=profile.val_fraction,
                val_split=profile.val_split,
                **_schedule(study.recipe),
            )
            runs.setdefault(run.key, run)
            rank.setdefault(run.key, i)
    if profile.order == "replicate":  # stable: within a replicate, the study order
        return sorted(runs.values(), key=lambda r: rank[r.key])
    return list(runs.values())
