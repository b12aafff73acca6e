"""SyncBatchNorm: batch normalisation with the statistics of the whole batch, over every rank."""

from __future__ import annotations

from typing import Any

from chainrule import devices
from chainrule.autograd.function import Function, once_differentiable
from chainrule.nn import functional as F
from chainrule.nn.module import Module
from chainrule.nn.modules.normalization import _BatchNorm
from chainrule.tensor import Tensor, wrap

__all__ = ["SyncBatchNorm"]


class _SyncBatchNormFn(Function):
    """y = x̂·w + b, x̂ = (x - μ)/√(σ² + eps) with μ, σ² over the batch of every rank;
    dx = (ĝ - Σĝ/N - x̂·Σ(ĝ·x̂)/N)/σ with ĝ = g·w and both sums over every rank (N samples)"""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum):
        import chainrule.distributed as dist

        x = input._data
        xp = devices.xp_of(x)
        c = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        cshape = (1, c) + (1,) * (x.ndim - 2)
        n = x.size // c
        mean = x.mean(axis=axes)
        m2 = ((x - mean.reshape(cshape)) ** 2).sum(axis=axes)
        # every rank's (count, mean, M2), combined exactly (Chan et al.'s parallel variance)
        mine = xp.concatenate([xp.full(1, n, x.dtype), mean, m2])
        rows = [wrap(xp.empty_like(mine)) for _ in range(dist.get_world_size())]
        dist.all_gather(rows, wrap(mine))
        stats = xp.stack([r._data for r in rows])
        counts, means, m2s = stats[:, :1], stats[:, 1:c + 1], stats[:, c + 1:]
        total = counts.sum()
        mean = (counts * means).sum(axis=0) / total
        m2 = (m2s + counts * (means - mean) ** 2).sum(axis=0)
        rstd = 1 / xp.sqrt(m2 / total + x.dtype.type(eps))
        xhat = (x - mean.reshape(cshape)) * rstd.reshape(cshape)
        if running_mean is not None:
            rm = running_mean._data
            running_mean._data = rm * (1 - momentum) + mean.astype(rm.dtype) * momentum
        if running_var is not None:
            rv = running_var._data
            unbiased = (m2 / max(float(total) - 1, 1)).astype(rv.dtype)
            running_var._data = rv * (1 - momentum) + unbiased * momentum
        ctx.save_for_backward(weight, wrap(xhat), wrap(rstd))
        ctx.axes, ctx.cshape, ctx.total = axes, cshape, float(total)
        y = xhat * weight._data.reshape(cshape) if weight is not None else xhat.copy()
        if bias is not None:
            y += bias._data.reshape(cshape)
        return wrap(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        import chainrule.distributed as dist

        weight, xhat, rstd = (None if t is None else t._data for t in ctx.saved_tensors)
        g, axes, cshape = grad._data, ctx.axes, ctx.cshape
        xp = devices.xp_of(g)
        gw = (g * xhat).sum(axis=axes)
        gb = g.sum(axis=axes)
        gx = None
        if ctx.needs_input_grad[0]:
            w = weight.reshape(cshape) if weight is not None else 1
            sums = wrap(xp.concatenate([gb * (weight if weight is not None else 1),
                                        gw * (weight if weight is not None else 1)]))
            dist.all_reduce(sums)
            c = gb.shape[0]
            m1 = (sums._data[:c] / ctx.total).reshape(cshape)
            m2 = (sums._data[c:] / ctx.total).reshape(cshape)
            gx = wrap((g * w - m1 - xhat * m2) * rstd.reshape(cshape))
        return (gx, wrap(gw) if ctx.needs_input_grad[1] else None,
                wrap(gb) if ctx.needs_input_grad[2] else None, None, None, None, None)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the batch of every rank of the process group
    (any input of 2 or more dims; (N, C, ...)); in eval, or with one process, plain BatchNorm."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group: Any = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        import chainrule.distributed as dist

        self._check_input_dim(input)
        if input.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected {self.num_features} channels (dim 1), "
                             f"got input of shape {tuple(input.shape)}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_stats = not self.training or self.track_running_stats
        running_mean = self.running_mean if use_stats else None
        running_var = self.running_var if use_stats else None
        if not (bn_training and dist.is_initialized() and dist.get_world_size() > 1):
            return F.batch_norm(input, running_mean, running_var, self.weight, self.bias,
                                bn_training, factor, self.eps)
        return _SyncBatchNormFn.apply(input, self.weight, self.bias, running_mean, running_var,
                                      float(self.eps), factor)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every BatchNorm*d replaced by a SyncBatchNorm sharing its parameters
        and buffers (a BatchNorm at the top is returned as a new module)."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
