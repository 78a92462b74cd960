"""ArbEmbedding: an embedding whose rows are read from a shared table through an index map (hash embeddings)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hashlab.configs import check_int

from .layers import ArbLayer, _as_tensor, bucket_means

__all__ = ["ArbEmbedding"]


class ArbEmbedding(ArbLayer):
    r"""Embedding whose virtual ``(num_embeddings, embedding_dim)`` matrix is read from a table of shared entries.

    Row :math:`r` of the virtual matrix is :math:`E_{r,j} = \xi_{r,j}\,\text{table}[h(r, j)]` (0 where
    :math:`h(r, j) = -1`), and ``forward(input)`` returns the rows ``input`` names, as
    :func:`torch.nn.functional.embedding` does, gathering only those rows from the table (the whole matrix is
    never built). With a hash map this is a hashed embedding (HashedNets' hashing trick on an embedding matrix,
    Chen et al. 2015; hash embeddings, Svenstrup et al., NeurIPS 2017, share the same idea of hashed rows); with a
    ``block`` map (``hashlab.HashSpec(kind="block")``) each row reads a contiguous run of the table, which is
    ROBE-Z (Desai et al., MLSys 2022); an optional sign hash :math:`\xi` decorrelates rows that share entries.
    With the identity map it is :class:`torch.nn.Embedding`.

    ``padding_idx`` and ``max_norm`` follow :class:`torch.nn.Embedding`:

    * ``padding_idx``: that row is all zeros and sends no gradient (its map row is ignored), whatever the table
      holds; :meth:`virtual_weight` shows it as zeros.
    * ``max_norm``: a looked-up row whose ``norm_type``-norm exceeds ``max_norm`` is scaled by
      ``max_norm / (norm + 1e-7)``, and the gradient flows as if the scaled row were the weight (``nn.Embedding``
      renormalises its weight in place under ``no_grad``, then looks it up). The one difference: ``nn.Embedding``
      writes the scaled rows back into its weight; here rows share table entries, so scaling one row in place
      would change others, and the table is left as it is (each lookup is scaled afresh).

    The table gradient is :class:`~trainers.torch_backend.functional.TableGather`'s over the looked-up weights:
    on the CPU a serial numba scatter in a fixed order (bitwise reproducible), elsewhere ``index_add_``.

    Args:
        num_embeddings: rows of the virtual matrix (the vocabulary).
        embedding_dim: size of each row.
        indices: integer tensor or array ``(num_embeddings, embedding_dim)``, values in ``[-1, table_size)``.
        table_size: entries ``n`` of the table; ``None`` with ``table``.
        sign: optional integer tensor of ``indices``'s shape with values in ``{-1, +1}``.
        padding_idx: optional row in ``[-num_embeddings, num_embeddings)`` (negative counts from the end), as
            :class:`torch.nn.Embedding`'s.
        max_norm: optional float ``> 0``; ``norm_type``: the p of the norm (default 2), as
            :class:`torch.nn.Embedding`'s.
        table: optional 1-D :class:`~torch.nn.Parameter` shared with other layers (left alone by
            :meth:`reset_parameters`).

    Shape:
        - Input: integer tensor :math:`(*)` of row numbers in ``[0, num_embeddings)``.
        - Output: :math:`(*, \text{embedding\_dim})`, the table's dtype.

    Attributes:
        table: ``(table_size,)``; an owned table starts from :math:`\mathcal{N}(0, 1)` as ``nn.Embedding``'s
            weight does, so every virtual weight does too.
        indices, sign, zero_mask, weight_plan, index_bytes: as :class:`ArbLinear`'s, of shape :attr:`map_shape`;
            the plan keeps a key per virtual weight (no row list, no view) so that rows can be looked up.

    Raises:
        ValueError: on sizes below 1, a ``padding_idx`` out of range, ``max_norm <= 0``, or indices and sign
            of the wrong shape or range.
        TypeError: if ``table`` is not a 1-D Parameter, or ``indices`` does not hold integers.

    Examples::

        >>> idx = torch.randint(0, 500, (10000, 16))
        >>> emb = ArbEmbedding(10000, 16, idx, table_size=500, padding_idx=0)
        >>> emb(torch.tensor([[0, 7, 9999]])).shape
        torch.Size([1, 3, 16])
        >>> emb
        ArbEmbedding(10000, 16, padding_idx=0, table_size=500, compression_ratio=320
          (weight_plan): MapPlan(...)
        )
    """

    __constants__ = ["num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type"]
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    max_norm: float | None
    norm_type: float
    _plan_options: dict[str, Any] = {"lanes": 1, "compact": False, "view": False}  # a key per weight: row lookups

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        indices: Tensor | np.ndarray,
        table_size: int | None,
        sign: Tensor | np.ndarray | None = None,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        *,
        table: nn.Parameter | None = None,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        check_int("num_embeddings", num_embeddings, 1, sys.maxsize)
        check_int("embedding_dim", embedding_dim, 1, sys.maxsize)
        if padding_idx is not None:
            check_int(
                "padding_idx",
                padding_idx,
                -num_embeddings,
                num_embeddings - 1,
                hint="a row of the embedding, negative counts from the end",
            )
            padding_idx = padding_idx % num_embeddings
        if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm > 0):
            raise ValueError(f"max_norm must be a number > 0 (or None: no renormalisation), got {max_norm!r}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, float(norm_type)
        self._init_table(table_size, table, factory_kwargs)
        self._init_map(indices, sign, None, None, device)
        self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def map_shape(self) -> tuple[int, int]:
        """``(num_embeddings, embedding_dim)``: row ``r`` of the map is embedding ``r``."""
        return self.num_embeddings, self.embedding_dim

    @classmethod
    def from_embedding(
        cls,
        embedding: nn.Embedding,
        indices: Tensor | np.ndarray,
        table_size: int | None = None,
        sign: Tensor | np.ndarray | None = None,
    ) -> ArbEmbedding:
        r"""An :class:`ArbEmbedding` of map ``indices`` whose table approximates ``embedding``'s weight.

        Entry ``e`` is the mean of ``sign * weight`` over the weights reading it (:func:`bucket_means`), the
        ``padding_idx`` row left out (it reads nothing: always zero); ``padding_idx``, ``max_norm`` and
        ``norm_type`` are ``embedding``'s. With the identity map the layer equals ``embedding`` (its padding row
        zero, as ``nn.Embedding`` starts it).

        Raises:
            TypeError: if ``embedding`` is not an :class:`torch.nn.Embedding`.
            ValueError: if it has ``scale_grad_by_freq`` or ``sparse`` (not supported: keep it dense, e.g.
                ``arbify(..., skip=...)``), or as the constructor.
        """
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        if embedding.scale_grad_by_freq or embedding.sparse:
            raise ValueError(
                "ArbEmbedding supports neither scale_grad_by_freq nor sparse gradients (its table gradient is "
                "dense); turn them off or keep this embedding dense (arbify(..., skip=[its name]))"
            )
        w = embedding.weight
        if table_size is None:
            table_size = max(int(_as_tensor(indices, "indices").max()) + 1, 1)
        layer = cls(
            embedding.num_embeddings,
            embedding.embedding_dim,
            indices,
            table_size,
            sign,
            padding_idx=embedding.padding_idx,
            max_norm=embedding.max_norm,
            norm_type=embedding.norm_type,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            layer.table.copy_(bucket_means(table_size, [(w, layer.reader_indices(), layer.sign)]))
        return layer.train(embedding.training)

    def reader_indices(self) -> Tensor:
        """The map with the ``padding_idx`` row set to ``-1``: which entry each virtual weight really reads."""
        idx = self.indices
        if self.padding_idx is not None:
            idx = idx.clone()
            idx[self.padding_idx] = -1
        return idx

    def entry_loads(self) -> Tensor:
        """int64 ``(table_size,)``: how many virtual weights read each entry (zeroed ones and the padding row not
        counted, signs ignored)."""
        loads = self.weight_plan.entry_loads(self.table.device)
        if self.padding_idx is not None:
            row = self.indices[self.padding_idx].long()
            row = row[row >= 0]
            loads = loads - torch.bincount(row, minlength=self.table_size).to(loads.device)
        return loads

    def reset_parameters(self) -> None:
        r"""Draw an owned table from :math:`\mathcal{N}(0, 1)`, as :class:`torch.nn.Embedding` draws its weight.

        The padding row needs no init: it reads zeros whatever the table holds. A shared table is left alone.
        """
        if self._owns_table:
            nn.init.normal_(self.table)

    def virtual_weight(self) -> Tensor:
        """The virtual matrix ``(num_embeddings, embedding_dim)`` (the ``padding_idx`` row zero), differentiable."""
        w = super().virtual_weight()
        if self.padding_idx is not None:
            w = w.index_fill(0, torch.tensor([self.padding_idx], device=w.device), 0.0)
        return w

    def forward(self, input: Tensor) -> Tensor:
        if input.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input must hold int64 or int32 row numbers, got {input.dtype}")
        rows = input.long()
        pad = None if self.padding_idx is None else rows == self.padding_idx
        out = self.weight_plan.lookup(self.table, rows, pad, self._grad_scale)  # (*, embedding_dim)
        if self.max_norm is not None:  # nn.Embedding's renorm: scale rows over max_norm, gradient as if unscaled
            with torch.no_grad():
                norm = out.norm(p=self.norm_type, dim=-1, keepdim=True)  # (*, 1)
                scale = torch.where(norm > self.max_norm, self.max_norm / (norm + 1e-7), torch.ones_like(norm))
            out = out.detach() * scale + (out - out.detach())
        return out

    def extra_repr(self) -> str:
        parts = [f"{self.num_embeddings}", f"{self.embedding_dim}"]
        if self.padding_idx is not None:
            parts.append(f"padding_idx={self.padding_idx}")
        if self.max_norm is not None:
            parts.append(f"max_norm={self.max_norm}")
        if self.norm_type != 2:
            parts.append(f"norm_type={self.norm_type}")
        return ", ".join(parts + self._map_repr())
