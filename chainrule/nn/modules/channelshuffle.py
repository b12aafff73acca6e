"""ChannelShuffle: ``F.channel_shuffle`` as a layer."""

from __future__ import annotations

from chainrule.nn.module import Module
from chainrule.nn.sampling import channel_shuffle
from chainrule.tensor import Tensor

__all__ = ["ChannelShuffle"]


class ChannelShuffle(Module):
    """Interleave the channels of ``groups`` groups (ShuffleNet)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, input: Tensor) -> Tensor:
        """channel_shuffle(input, groups)."""
        return channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
