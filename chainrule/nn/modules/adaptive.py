"""AdaptiveLogSoftmaxWithLoss: the efficient softmax of Grave et al. (frequent classes in a
head, rare ones in smaller clusters), with PyTorch's parameters and outputs."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.nn.module import Module
from chainrule.nn.modules.container import ModuleList, Sequential
from chainrule.nn.modules.linear import Linear
from chainrule.ops.reduce import log_softmax
from chainrule.ops.shape import cat
from chainrule.tensor import Tensor, wrap

__all__ = ["AdaptiveLogSoftmaxWithLoss"]

_ASMoutput = namedtuple("_ASMoutput", ["output", "loss"])


class AdaptiveLogSoftmaxWithLoss(Module):
    """log p(class) = log p(cluster | head) + log p(class | cluster); returns the target's
    log-probability per sample and the mean negative log-likelihood."""

    def __init__(self, in_features: int, n_classes: int, cutoffs: Sequence[int],
                 div_value: float = 4.0, head_bias: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        kw = {"device": device, "dtype": dtype}
        super().__init__()
        cutoffs = list(cutoffs)
        if len(cutoffs) == 0:
            raise ValueError("cutoffs should be a sequence of length larger than 0")
        if (cutoffs != sorted(cutoffs) or min(cutoffs) <= 0 or max(cutoffs) > n_classes - 1
                or len(set(cutoffs)) != len(cutoffs) or any(int(c) != c for c in cutoffs)):
            raise ValueError("cutoffs should be a sequence of unique, positive integers sorted in "
                             "an increasing order, where each value is between 1 and "
                             "n_classes-1")
        self.in_features = in_features
        self.n_classes = n_classes
        self.cutoffs = cutoffs + [n_classes]
        self.div_value = div_value
        self.head_bias = head_bias
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        self.head = Linear(in_features, self.head_size, bias=head_bias, **kw)
        self.tail = ModuleList()
        for i in range(self.n_clusters):
            hsz = int(in_features // div_value ** (i + 1))
            osz = self.cutoffs[i + 1] - self.cutoffs[i]
            self.tail.append(Sequential(Linear(in_features, hsz, bias=False, **kw),
                                        Linear(hsz, osz, bias=False, **kw)))

    def reset_parameters(self) -> None:
        """Re-initialise the head and every cluster's two projections."""
        self.head.reset_parameters()
        for i2h, h2o in self.tail:
            i2h.reset_parameters()
            h2o.reset_parameters()

    def forward(self, input_: Tensor, target_: Tensor) -> _ASMoutput:
        """(log-probability of each target, mean negative log-likelihood)."""
        targ_dim = target_.ndim
        if targ_dim == 1:
            if input_.shape[0] != target_.shape[0]:
                raise RuntimeError("Input and target should have the same size in the batch "
                                   "dimension.")
            if input_.ndim != 2:
                raise RuntimeError(f"1D target tensor expects 2D input tensors, but found inputs "
                                   f"with size {input_.shape}")
        elif targ_dim == 0:
            if input_.ndim != 1:
                raise RuntimeError(f"0D target tensor expects 1D input tensors, but found inputs "
                                   f"with size {input_.shape}")
        else:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        batched = targ_dim > 0
        input = input_ if batched else input_.unsqueeze(0)
        t = devices.to_device(target_._data, "cpu").reshape(-1).astype(np.int64)
        n = t.shape[0]
        gather_inds = np.zeros(n, np.int64)
        output = None
        used = 0
        bounds = [0] + self.cutoffs
        like = input._data
        for i in range(len(bounds) - 1):
            rows = np.flatnonzero((t >= bounds[i]) & (t < bounds[i + 1]))
            if rows.size == 0:
                continue
            used += rows.size
            if i == 0:
                gather_inds[rows] = t[rows]
                continue
            gather_inds[rows] = self.shortlist_size + i - 1
            rows_t = wrap(devices.asarray_on(rows, like, np.int64))
            cluster = log_softmax(self.tail[i - 1](input.index_select(0, rows_t)), 1)
            rel = wrap(devices.asarray_on((t[rows] - bounds[i])[:, None], like, np.int64))
            local = cluster.gather(1, rel).squeeze(1)
            placed = input.new_zeros(n).scatter_add(0, rows_t, local)
            output = placed if output is None else output + placed
        if used != n:
            raise RuntimeError(f"Target values should be in [0, {self.n_classes - 1}], but values "
                               f"in range [{int(t.min())}, {int(t.max())}] were found. ")
        head = log_softmax(self.head(input), 1)
        picked = head.gather(1, wrap(devices.asarray_on(gather_inds[:, None], like,
                                                        np.int64))).squeeze(1)
        output = picked if output is None else output + picked
        loss = (-output).mean()
        if not batched:
            output = output.squeeze(0)
        return _ASMoutput(output, loss)

    def _get_full_log_prob(self, input: Tensor, head_output: Tensor) -> Tensor:
        head = log_softmax(head_output, 1)
        parts = [head[:, :self.shortlist_size]]
        for i in range(self.n_clusters):
            cluster = log_softmax(self.tail[i](input), 1)
            parts.append(cluster + head[:, self.shortlist_size + i].unsqueeze(1))
        return cat(parts, 1)

    def log_prob(self, input: Tensor) -> Tensor:
        """log p(class) for every class: (N, n_classes)."""
        return self._get_full_log_prob(input, self.head(input))

    def predict(self, input: Tensor) -> Tensor:
        """The most likely class per sample (cheaply when it is in the head's shortlist)."""
        head_output = self.head(input)
        output = head_output.argmax(1)
        outside = (output >= self.shortlist_size)._data
        if not outside.any():
            return output
        if outside.all():
            return self.log_prob(input).argmax(1)
        rows = wrap(devices.xp_of(outside).flatnonzero(outside))
        best = self._get_full_log_prob(input.index_select(0, rows),
                                       head_output.index_select(0, rows)).argmax(1)
        result = output._data.copy()
        result[rows._data] = best._data
        return wrap(result)
