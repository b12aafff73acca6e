"""All differentiable ops, grouped by family. Tensor methods and operators are bound here."""

from __future__ import annotations

from chainrule.autograd import accel as _accel
from chainrule.ops import binary as _binary
from chainrule.ops import elementwise as _elementwise
from chainrule.ops import index as _index
from chainrule.ops import linalg as _linalg
from chainrule.ops import reduce as _reduce
from chainrule.ops import shape as _shape
from chainrule.ops.binary import *  # noqa: F403
from chainrule.ops.elementwise import *  # noqa: F403
from chainrule.ops.index import *  # noqa: F403
from chainrule.ops.linalg import *  # noqa: F403
from chainrule.ops.reduce import *  # noqa: F403
from chainrule.ops.shape import *  # noqa: F403
from chainrule.tensor import Tensor

_FAMILIES = (_binary, _elementwise, _index, _linalg, _reduce, _shape)
__all__ = [name for fam in _FAMILIES for name in fam.__all__]

# Functions that are also Tensor methods under the same name (first argument = the tensor).
_METHODS = """
exp exp2 expm1 log log2 log10 log1p sqrt rsqrt abs absolute neg negative sign sin cos tan sinh
cosh asin acos atan tanh sigmoid relu softplus clamp clip reciprocal floor ceil round trunc frac
square erf logit clone isnan isinf isfinite logical_not
add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow float_power
maximum minimum masked_fill eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and
bitwise_or bitwise_xor bitwise_not equal allclose isclose atan2 xlogy
sum mean var std prod max min amax amin argmax argmin cumsum cumprod logsumexp softmax
log_softmax norm all any count_nonzero
reshape view flatten unflatten transpose swapaxes swapdims permute movedim squeeze unsqueeze
expand expand_as broadcast_to repeat tile flip fliplr flipud roll split chunk unbind narrow
tril triu diag diagonal ravel t
gather scatter_add scatter index_select take_along_dim take nonzero masked_select argwhere
matmul mm bmm mv dot vdot inner outer ger
""".split()

for _name in _METHODS:
    setattr(Tensor, _name, globals()[_name])


def _view_as(self, other):
    return reshape(self, other._data.shape)  # noqa: F405


def _where_method(self, condition, other):
    return where(condition, self, other)  # noqa: F405


def _rev(fn):
    return lambda self, other: fn(other, self)


Tensor.view_as = Tensor.reshape_as = _view_as
Tensor.where = _where_method
Tensor.__getitem__ = _index.index
_fast = _binary.fast_binary
Tensor.__add__ = _fast(_binary.Add, "add", add)  # noqa: F405
Tensor.__radd__ = _fast(_binary.Add, "add", add, reflected=True)  # noqa: F405
Tensor.__sub__ = _fast(_binary.Sub, "sub", sub)  # noqa: F405
Tensor.__rsub__ = _fast(_binary.Sub, "sub", sub, reflected=True)  # noqa: F405
Tensor.__mul__ = _fast(_binary.Mul, "mul", mul)  # noqa: F405
Tensor.__rmul__ = _fast(_binary.Mul, "mul", mul, reflected=True)  # noqa: F405
Tensor.__truediv__ = _fast(_binary.Div, "div", div)  # noqa: F405
Tensor.__rtruediv__ = _fast(_binary.Div, "div", div, reflected=True)  # noqa: F405
Tensor.__floordiv__ = floor_divide  # noqa: F405
Tensor.__rfloordiv__ = _rev(floor_divide)  # noqa: F405
Tensor.__mod__ = remainder  # noqa: F405
Tensor.__rmod__ = _rev(remainder)  # noqa: F405
Tensor.__pow__ = pow  # noqa: F405
Tensor.__rpow__ = _rev(pow)  # noqa: F405
Tensor.__matmul__ = matmul  # noqa: F405
Tensor.__rmatmul__ = _rev(matmul)  # noqa: F405
Tensor.__neg__ = neg  # noqa: F405
Tensor.__pos__ = positive  # noqa: F405
Tensor.__abs__ = abs  # noqa: F405
Tensor.__eq__ = eq  # noqa: F405
Tensor.__ne__ = ne  # noqa: F405
Tensor.__lt__ = lt  # noqa: F405
Tensor.__le__ = le  # noqa: F405
Tensor.__gt__ = gt  # noqa: F405
Tensor.__ge__ = ge  # noqa: F405
Tensor.__and__ = Tensor.__rand__ = bitwise_and  # noqa: F405
Tensor.__or__ = Tensor.__ror__ = bitwise_or  # noqa: F405
Tensor.__xor__ = Tensor.__rxor__ = bitwise_xor  # noqa: F405
Tensor.__invert__ = bitwise_not  # noqa: F405
_accel.install_gates(Tensor)
