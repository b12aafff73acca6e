"""In-place operations and views, as torch: version counters, recorded history, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr


def test_view_of_a_non_contiguous_tensor_raises_as_torch() -> None:
    torch = pytest.importorskip("torch")
    for m in (torch, cr):
        x = m.tensor(np.arange(6.0).reshape(2, 3)).t()
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            x.view(6)
        assert x.reshape(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        assert x.contiguous().view(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
