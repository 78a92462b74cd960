"""Train a group of K ArbMLPs of one architecture (different maps) as one batched model.

Every member is initialised exactly as :func:`~trainers.torch_backend.training.train` would
initialise it alone (an :class:`ArbMLP` built under ``torch.manual_seed(seed)``), then the K
models become one module: per table, the K tables stacked in one flat Parameter of ``K * n``
entries read by one :class:`~trainers.torch_backend.functional.TableGather` per layer (member
``k``'s indices offset by ``k * n``), one ``torch.baddbmm`` per layer, and one
``BatchNorm1d(K * out)`` that is K independent BatchNorms. The loss is the sum of the members'
mean cross-entropies, so each member gets the gradient it gets alone. SGD with momentum runs
with a per-member learning rate that follows that member's own plateau schedule; all members
see the same mini-batches (the shuffle of ``config.seed``). Each member's
:class:`~trainers.torch_backend.results.TrainResult` has the content :func:`train` returns for it
(timings are the group's).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from hashlab.io.atomic import atomic_write_json
from hashlab.io.format import load_index_file
from hashlab.maps.indexmap import IndexMap

from .config import TrainConfig
from .data import DeviceData, load_config_data, resolve_data_root
from .functional import build_plan, entry_loads, load_scale, table_gather
from .layers import ArbLinear
from .models import ArbMLP
from .results import DataInfo, EpochRecord, TrainResult, stop_rule_met
from .training import PAPER_CONFIG, _device_info, check_map_fits, make_result, resolve_device

__all__ = ["ArbMLPGroup", "GroupSGD", "train_group"]


def _own_bias(linear: ArbLinear) -> Tensor:
    """The layer's own bias Parameter (every member layer has one: table-read biases are refused)."""
    if linear.bias is None:
        raise ValueError(
            "train_group needs a bias Parameter on every layer (no table-read biases); "
            "train such maps one by one with train()"
        )
    return linear.bias


def _signature(imap: IndexMap) -> tuple:
    return (tuple(imap.table_sizes), tuple((lay.in_features, lay.out_features, lay.table) for lay in imap.layers))


class ArbMLPGroup(nn.Module):
    r"""K :class:`ArbMLP` members of one architecture as one module (copies of their parameters).

    Args:
        members: K initialised :class:`ArbMLP` of index maps with the same layer sizes, table
            sizes and table assignment (maps may differ in entries, sign hashes, zeros); no
            table-read biases.
        maps: their :class:`IndexMap` s, in the same order.

    Shape:
        - Input: :math:`(B, *)`, flattened to ``(B, in_features)``; every member sees it.
        - Output: :math:`(K, B, \text{out\_features})` logits.

    Raises:
        ValueError: if the members' maps differ in structure or read biases from the table.
    """

    def __init__(self, members: list[ArbMLP], maps: list[IndexMap]) -> None:
        super().__init__()
        if not members or len(members) != len(maps):
            raise ValueError("need one or more members, one index map each")
        if any(lay.bias_indices is not None for m in maps for lay in m.layers):
            raise ValueError(
                "train_group does not support biases read from the table (bias_indices); "
                "train such maps one by one with train()"
            )
        sig = _signature(maps[0])
        for i, m in enumerate(maps[1:], 1):
            if _signature(m) != sig:
                raise ValueError(
                    f"map {i} differs from map 0 in layer sizes, table sizes or table assignment; "
                    "a group needs one architecture (build every map with the same --arch)"
                )
        k, first = len(members), maps[0]
        self.num_members = k
        self.table_sizes = list(first.table_sizes)
        with torch.no_grad():
            self.tables = nn.ParameterDict()
            for t in range(len(self.table_sizes)):
                reader = next(j for j, lay in enumerate(first.layers) if lay.table == t)
                self.tables[str(t)] = nn.Parameter(torch.cat([m.linears[reader].table.detach() for m in members]))
            self.biases = nn.ParameterList(
                [
                    nn.Parameter(torch.stack([_own_bias(m.linears[j]).detach() for m in members]))
                    for j in range(len(first.layers))
                ]
            )
            self.bns = nn.ModuleList()
            for j, lay in enumerate(first.layers):
                bn = nn.BatchNorm1d(k * lay.out_features, device=members[0].linears[0].table.device)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(torch.cat([getattr(m.blocks[j].bn, name) for m in members]))
                self.bns.append(bn)
        self._layers = [(lay.in_features, lay.out_features, lay.table) for lay in first.layers]
        device = members[0].linears[0].table.device
        self._plans = []
        for j, (in_f, out_f, t) in enumerate(self._layers):
            n = self.table_sizes[t]
            idx = torch.stack(
                [torch.from_numpy(np.array(m.layers[j].indices, copy=True)).long() for m in maps]
            )  # (K, out, in)
            idx = torch.where(idx < 0, -1, idx + n * torch.arange(k).view(k, 1, 1))
            sign = None  # members without a sign hash read with +1 where others have one
            if any(m.layers[j].sign is not None for m in maps):
                sign = torch.stack(
                    [
                        torch.ones(out_f, in_f, dtype=torch.int8)
                        if m.layers[j].sign is None
                        else torch.from_numpy(np.array(m.layers[j].sign, copy=True))
                        for m in maps
                    ]
                )
            plan = build_plan(
                idx.to(device), n * k, None if sign is None else sign.to(device), sorted_segments=device.type != "cpu"
            )
            self._plans.append(plan)
        self._scales: list[Tensor | None] = [None] * len(self._layers)

    def set_table_grad_scale(self, mode: str | Sequence[str]) -> None:
        """Load normalisation per member and table, as :meth:`ArbMLP.set_table_grad_scale` does alone.

        Args:
            mode: one mode for every member, or one per member (members may differ: a member with ``"none"``
                gets factor 1 where the others are scaled).

        Raises:
            ValueError: on an unknown mode, or a list whose length is not the number of members.
        """
        k = self.num_members
        modes = [mode] * k if isinstance(mode, str) else list(mode)
        if len(modes) != k:
            raise ValueError(f"{len(modes)} table_grad_scale modes for {k} members; give one, or one per member")
        for t, n in enumerate(self.table_sizes):
            readers = [j for j, lay in enumerate(self._layers) if lay[2] == t]
            loads = torch.stack([entry_loads(self._plans[j]) for j in readers]).sum(0).view(k, n)  # int64: exact
            dtype = self.tables[str(t)].dtype
            scales = [load_scale(loads[i], m, dtype) for i, m in enumerate(modes)]
            scale = None
            if any(s is not None for s in scales):  # a member with "none" reads factor 1 beside the scaled ones
                ones = torch.ones(n, dtype=dtype, device=loads.device)
                scale = torch.cat([ones if s is None else s for s in scales]).to(self.tables[str(t)].device)
            for j in readers:
                self._scales[j] = scale

    def forward(self, input: Tensor) -> Tensor:
        k = self.num_members
        h = input.flatten(1)
        h = h.unsqueeze(0).expand(k, *h.shape)  # (K, B, in)
        for j, (in_f, out_f, t) in enumerate(self._layers):
            w = table_gather(self.tables[str(t)], self._plans[j], self._scales[j]).view(k, out_f, in_f)
            h = torch.baddbmm(self.biases[j].unsqueeze(1), h, w.transpose(1, 2))  # (K, B, out)
            h = F.elu(h)
            b = h.shape[1]
            h = self.bns[j](h.transpose(0, 1).reshape(b, k * out_f)).view(b, k, out_f).transpose(0, 1)
        return h

    def member_state(self, i: int) -> dict[str, Tensor]:
        """Member ``i``'s parameters and BatchNorm buffers under :class:`ArbMLP` state-dict names."""
        out: dict[str, Tensor] = {}
        for j, (_, out_f, t) in enumerate(self._layers):
            n = self.table_sizes[t]
            out[f"blocks.{j}.linear.table"] = self.tables[str(t)].detach()[i * n : (i + 1) * n]
            out[f"blocks.{j}.linear.bias"] = self.biases[j].detach()[i]
            for name in ("weight", "bias", "running_mean", "running_var"):
                out[f"blocks.{j}.bn.{name}"] = getattr(self.bns[j], name).detach()[i * out_f : (i + 1) * out_f]
        return out

    def member_index(self) -> dict[int, Tensor]:
        """For each parameter (by ``id``), int64 member number of every element (for per-member LRs)."""
        k, out = self.num_members, {}
        for t, n in enumerate(self.table_sizes):
            out[id(self.tables[str(t)])] = torch.arange(k).repeat_interleave(n)
        for j, (_, out_f, _) in enumerate(self._layers):
            out[id(self.biases[j])] = torch.arange(k).view(k, 1).expand(k, out_f)
            for p in (self.bns[j].weight, self.bns[j].bias):
                out[id(p)] = torch.arange(k).repeat_interleave(out_f)
        return out


class GroupSGD:
    """SGD with momentum and weight decay (torch.optim.SGD's update) with one learning rate per member.

    Args:
        group: the :class:`ArbMLPGroup`.
        lr, momentum, weight_decay: as for :class:`torch.optim.SGD`; ``lr`` is every member's start.

    Attributes:
        lrs: list of K floats, the current learning rate of each member.
    """

    def __init__(self, group: ArbMLPGroup, lr: float, momentum: float, weight_decay: float = 0.0) -> None:
        self.params = list(group.parameters())
        index = group.member_index()
        self.member = [index[id(p)].to(p.device) for p in self.params]
        self.lrs = [lr] * group.num_members
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[Tensor | None] = [None] * len(self.params)
        self._lr_cache: dict[int, tuple[tuple[float, ...], Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.clone()
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            p.sub_(self._lr_of(i, p) * g)

    def _lr_of(self, i: int, p: Tensor) -> Tensor:
        """Each element's member learning rate for parameter ``i``, on its device; remade only when ``lrs`` changed
        (the plateau schedule changes them between epochs), so a step copies nothing from the host."""
        lrs = tuple(self.lrs)
        if self._lr_cache.get(i, (None,))[0] != lrs:
            self._lr_cache[i] = (lrs, torch.tensor(lrs, dtype=p.dtype, device=p.device)[self.member[i]])
        return self._lr_cache[i][1]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class _Plateau:
    """torch's ReduceLROnPlateau(mode="max", threshold=0, "abs", cooldown 0, min_lr 0) for one float."""

    def __init__(self, config: TrainConfig) -> None:
        self.best, self.bad = -float("inf"), 0
        self.factor, self.patience = config.lr_factor, config.lr_patience - 1

    def step(self, metric: float, lr: float) -> float:
        if metric > self.best:
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            self.bad = 0
            new = max(lr * self.factor, 0.0)
            return new if lr - new > 1e-8 else lr
        return lr


def _epoch(
    group: ArbMLPGroup,
    opt: GroupSGD,
    data: DeviceData,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[list[float], list[float]]:
    group.train()
    n, k = len(data), group.num_members
    order = torch.randperm(n, generator=generator).to(data.labels.device)
    correct = torch.zeros(k, dtype=torch.int64, device=data.labels.device)
    loss_sum = torch.zeros(k, dtype=torch.float64, device=data.labels.device)
    seen = 0
    for s in [s for s in range(0, n, batch_size) if min(batch_size, n - s) >= 2]:
        x, y = data.batch(order[s : s + batch_size])
        logits = group(x)  # (K, B, C)
        losses = F.cross_entropy(logits.transpose(1, 2), y.unsqueeze(0).expand(k, -1), reduction="none").mean(1)
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
        with torch.no_grad():
            correct += (logits.argmax(2) == y).sum(1)
            loss_sum += losses.detach().to(torch.float64) * len(y)
        seen += len(y)
    return [int(c) / seen for c in correct], [float(v) / seen for v in loss_sum]


@torch.no_grad()
def _evaluate(group: ArbMLPGroup, data: DeviceData, batch_size: int) -> tuple[list[float], list[float]]:
    group.eval()
    k = group.num_members
    correct, loss_sum = torch.zeros(k, dtype=torch.int64), torch.zeros(k, dtype=torch.float64)
    for s in range(0, len(data), batch_size):
        x, y = data.batch(slice(s, s + batch_size))
        logits = group(x)
        correct += (logits.argmax(2) == y).sum(1).cpu()
        loss_sum += (
            F.cross_entropy(logits.transpose(1, 2), y.unsqueeze(0).expand(k, -1), reduction="none")
            .sum(1)
            .double()
            .cpu()
        )
    return [int(c) / len(data) for c in correct], [float(v) / len(data) for v in loss_sum]


def _store(which: list[int], evaluation: tuple[list[float], list[float]], acc: list[float], loss: list[float]) -> None:
    for i in which:
        acc[i], loss[i] = evaluation[0][i], evaluation[1][i]


def fit_group(
    maps: list[IndexMap],
    config: TrainConfig,
    device: torch.device,
    root: Path,
    progress: bool = False,
    table_grad_scales: Sequence[str] | None = None,
) -> tuple[list[ArbMLP], ArbMLPGroup, DataInfo, list[list[EpochRecord]], list[float], list[float]]:
    """Initialise each member as :func:`train` would, train the group, evaluate: the body of :func:`train_group`.

    Under a stopping rule (``config.stop_after_drops``) a member is evaluated on the test set at
    the epoch where it alone would stop; its learning rate is then 0 and its records end there.
    ``table_grad_scales`` (one per map) overrides ``config.table_grad_scale`` member by member.

    Returns:
        ``(members, group, data_info, epochs per member, test accuracies, test losses)``;
        ``members`` are the freshly initialised solo models (untrained; for their sizes).
    """
    train_data, test_data, data_info = load_config_data(config, root, device)
    members = []
    for imap in maps:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            members.append(ArbMLP(imap, device=device))
    group = ArbMLPGroup(members, maps)
    group.set_table_grad_scale(config.table_grad_scale if table_grad_scales is None else table_grad_scales)
    opt = GroupSGD(group, config.lr, config.momentum, config.weight_decay)
    plateaus = [_Plateau(config) for _ in maps]
    shuffle = torch.Generator().manual_seed(config.seed)
    epochs: list[list[EpochRecord]] = [[] for _ in maps]
    test_acc: list[float] = [float("nan")] * len(maps)
    test_loss: list[float] = [float("nan")] * len(maps)
    active = list(range(len(maps)))
    for epoch in tqdm(range(1, config.epochs + 1), desc="epochs", disable=not progress, unit="epoch"):
        te = time.perf_counter()
        lrs = list(opt.lrs)
        accs, losses = _epoch(group, opt, train_data, config.batch_size, shuffle)
        wall = time.perf_counter() - te
        for i in active:
            opt.lrs[i] = plateaus[i].step(accs[i], opt.lrs[i])
            epochs[i].append(
                EpochRecord(epoch=epoch, train_accuracy=accs[i], train_loss=losses[i], lr=lrs[i], wall_time_s=wall)
            )
        done = [
            i for i in active if stop_rule_met([e.lr for e in epochs[i]], config.stop_after_drops, config.stop_patience)
        ]
        if done:  # evaluated where a solo run would stop, then frozen (learning rate 0) for the rest of the group
            _store(done, _evaluate(group, test_data, config.eval_batch_size), test_acc, test_loss)
            for i in done:
                opt.lrs[i] = 0.0
            active = [i for i in active if i not in done]
        if not active:
            break
    if active:
        _store(active, _evaluate(group, test_data, config.eval_batch_size), test_acc, test_loss)
    return members, group, DataInfo.from_dict(data_info), epochs, test_acc, test_loss


def train_group(
    index_files: Sequence[str | os.PathLike],
    config: TrainConfig = PAPER_CONFIG,
    outs: Sequence[str | os.PathLike] | None = None,
    progress: bool | None = None,
    table_grad_scales: Sequence[str] | None = None,
) -> list[TrainResult]:
    """Train the ArbMLPs of ``index_files`` together as one batched model; one result per file.

    Each :class:`~trainers.torch_backend.results.TrainResult` has the content
    :func:`~trainers.torch_backend.training.train` returns for
    that file and config (same seed: same initialisation, same mini-batch order, own plateau
    schedule), up to float rounding of the batched kernels; ``epochs[*].wall_time_s`` and
    ``wall_time_s`` are the group's (the whole group's time, not a share).

    Args:
        index_files: K >= 1 index files (any format version) of one architecture (same layer and table
            sizes and table assignment), e.g. the same ``hashlab build --arch`` with different
            kinds or seeds.
        config: the training configuration (``optimizer="sgd"`` only).
        outs: optional K paths; result ``k``'s JSON (``to_dict()``) is written to ``outs[k]`` atomically.
        progress: tqdm bar over epochs; ``None``: when stderr is a tty.
        table_grad_scales: optional K modes, one per file, for members that differ in their load
            normalisation (``config.table_grad_scale`` otherwise); result ``k``'s config records its own.

    Raises:
        ValueError: on an empty list, maps of different architectures, table-read biases,
            an optimizer other than SGD, ``outs`` or ``table_grad_scales`` of the wrong length or an
            unknown mode, or maps that do not fit the dataset.
        FileNotFoundError, hashlab.io.format.FormatError, DatasetError: as :func:`train`.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    index_files = list(index_files)
    if not index_files:
        raise ValueError("index_files is empty; pass one or more index files")
    if config.optimizer != "sgd":
        raise ValueError(
            f"train_group supports optimizer='sgd' only, got {config.optimizer!r}; "
            "train such models one by one with train()"
        )
    # -- the paper's network and recipe only --
    paper = TrainConfig()
    changed = [
        f"{k}={getattr(config, k)!r}"
        for k in ("loss", "val_fraction", "lr_metric")
        if getattr(config, k) != getattr(paper, k)
    ]
    changed += [f"{k}={v!r}" for k, v in config.model_options().items() if v != paper.model_options()[k]]
    if changed:
        raise ValueError(
            f"train_group trains the paper's network and recipe only, got {', '.join(changed)}; "
            "train such models one by one with train()"
        )
    # -- end --
    if outs is not None and len(outs) != len(index_files):
        raise ValueError(f"outs has {len(outs)} paths for {len(index_files)} index files")
    configs = [config] * len(index_files)
    if table_grad_scales is not None:
        if len(table_grad_scales) != len(index_files):
            raise ValueError(f"table_grad_scales has {len(table_grad_scales)} modes for {len(index_files)} index files")
        # replace() validates each mode (ConfigError names an unknown one)
        configs = [dataclasses.replace(config, table_grad_scale=m) for m in table_grad_scales]  # type: ignore[arg-type]
    t0 = time.perf_counter()
    progress = sys.stderr.isatty() if progress is None else progress
    paths = [Path(f).resolve() for f in index_files]
    maps = [load_index_file(p, mmap=True, validate=True) for p in paths]
    for p, imap in zip(paths, maps):
        check_map_fits(imap, config, p)
    device = resolve_device(config.device)
    root = resolve_data_root(config.data_root)
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        device_info = _device_info(device)
        members, _, data_info, epochs, accs, losses = fit_group(
            maps, config, device, root, progress, [c.table_grad_scale for c in configs]
        )
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - t0
    results = [
        make_result(c, p, imap, device_info, m, data_info, ep, acc, loss, wall)
        for c, p, imap, m, ep, acc, loss in zip(configs, paths, maps, members, epochs, accs, losses)
    ]
    for res, out in zip(results, outs or []):
        atomic_write_json(out, res.to_dict())
    return results
