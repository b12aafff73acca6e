"""The ``probs`` / ``logits`` parameter pair of the discrete distributions."""

from __future__ import annotations

from typing import Any

from chainrule.distributions.utils import lazy_property, logits_to_probs, probs_to_logits
from chainrule.tensor import Tensor

__all__ = ["ProbsOrLogits"]


class ProbsOrLogits:
    """Exactly one of ``probs``/``logits`` is given; the other is computed on first use.
    ``_binary``: sigmoid/logit (Bernoulli, Binomial) or softmax/log (Categorical)."""

    _binary = True

    @staticmethod
    def _check_one(probs: Any, logits: Any) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs, is_binary=self._binary)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits, is_binary=self._binary)

    @property
    def param_shape(self) -> tuple:
        return self._param.size()

    def _expand_param(self, new: Any, shape: tuple) -> None:
        """Give ``new`` this distribution's given parameter, expanded to ``shape``."""
        for name in ("probs", "logits"):
            if name in self.__dict__:
                setattr(new, name, getattr(self, name).expand(shape))
                new._param = getattr(new, name)
