"""Registry entries for the ops added for issue 13's API coverage: special functions, sorting and
order statistics, cr.linalg, and the elementwise, reduction, shape and indexing additions.

Each entry runs through the generic tests (tests/test_ops_*.py): forward against torch in
float32 and float64, float64 gradcheck and gradgradcheck, gradients against torch. Entries with
no NumPy reference (``ref=None``) are checked against torch only. Decompositions whose factors
are unique only up to signs (svd, eigh) are called through sign-invariant products.
"""

from __future__ import annotations

import math

from op_registry import DOMAINS, OpSpec, add, torch_module

DOMAINS.setdefault("unit", lambda rng, s: rng.uniform(-0.9, 0.9, s))      # inside (-1, 1)
DOMAINS.setdefault("above1", lambda rng, s: rng.uniform(1.2, 3.0, s))     # acosh
DOMAINS.setdefault("prob", lambda rng, s: rng.uniform(0.05, 0.95, s))     # (0, 1)


def _by(name: str, *margs, ns: str | None = None, **mkw):
    """``m.name(*inputs, *margs, **mkw)`` (``ns``: a submodule such as 'linalg', 'special')."""
    def call(m, *a, **kw):
        mod = getattr(m, ns) if ns else m
        return getattr(mod, name)(*a, *margs, **mkw, **kw)

    if ns is None:  # cr.linalg.norm is not Tensor.norm: only top-level names have methods
        call.by_name = name
    return call


def _method(name: str, *margs, **mkw):
    return lambda m, x, *a, **kw: getattr(x, name)(*a, *margs, **mkw, **kw)


def _scipy_ref(name: str, *args):
    """scipy.special's function as the NumPy reference where SciPy is installed."""
    try:
        import scipy.special as sp
    except ImportError:  # pragma: no cover
        return None
    return lambda x: getattr(sp, name)(*args, x)


def _t(m, v, dtype=None):
    return m.tensor(v) if dtype is None else m.tensor(v, dtype=dtype)


X = (((3, 4),),)
X3 = (((2, 3, 4),),)
SQ = (((3, 3),),)
BSQ = (((2, 3, 3),),)

# ---- special functions --------------------------------------------------------------------------
add(OpSpec("digamma", _by("digamma"), _scipy_ref("digamma"), X, "positive", torch=False,
           tags=("unary", "special")))
for _name, _dom in (("lgamma", "positive"), ("erfinv", "unit"),
                    ("erfc", "any"), ("i0", "any"), ("sinc", "real")):
    add(OpSpec(_name, _by(_name), None, X, _dom, tags=("unary", "special")))
    add(OpSpec(f"Tensor.{_name}", _method(_name), None, (((4,),),), _dom,
               tags=("unary", "method")))
add(OpSpec("polygamma", lambda m, x, n=3: m.polygamma(n, x), None, X, "positive",
           kwargs=({"n": 3},), tags=("special",)))


# torch's trigamma (polygamma(1, x), digamma's derivative) is good to ~1e-9 only: chainrule's
# is checked against SciPy's instead (to 1e-10), and by gradcheck
add(OpSpec("polygamma(1)", lambda m, x: m.polygamma(1, x), _scipy_ref("polygamma", 1), X,
           "positive", torch=False, tags=("special",)))
add(OpSpec("mvlgamma", _by("mvlgamma", p=3), None, X, "above1", tags=("special",)))
for _name, _dom in (("i1", "any"), ("i0e", "any"), ("i1e", "any"), ("ndtr", "any"),
                    ("log_ndtr", "any"), ("ndtri", "prob"), ("entr", "positive"),
                    ("erfcx", "any"), ("expit", "any"),
                    ("gammaln", "positive")):
    add(OpSpec(f"special.{_name}", _by(_name, ns="special"), None, X, _dom,
               tags=("special",)))
# torch has no derivative for spherical_bessel_j0: gradcheck only
add(OpSpec("special.spherical_bessel_j0", _by("spherical_bessel_j0", ns="special"), None, X,
           "real", torch_grad=False, torch_gradgrad=False, tags=("special",)))
add(OpSpec("special.xlog1py", _by("xlog1py", ns="special"), None, (((3, 4), (3, 4)),),
           ("real", "positive"), tags=("special",)))
add(OpSpec("special.multigammaln", _by("multigammaln", ns="special", p=2), None, X, "above1",
           tags=("special",)))
add(OpSpec("special.gammainc", _by("gammainc", ns="special"), None, (((3, 4), (3, 4)),),
           "positive", diff=(False, True), tags=("special",)))

# ---- elementwise and binary additions ----------------------------------------------------------
for _name, _dom in (("asinh", "any"), ("atanh", "unit"), ("acosh", "above1"),
                    ("arcsin", "unit"), ("arctanh", "unit"), ("deg2rad", "any"),
                    ("rad2deg", "any"), ("fix", "nonint"), ("nan_to_num", "special")):
    add(OpSpec(_name, _by(_name), None, X, _dom, tags=("unary",)))
    add(OpSpec(f"Tensor.{_name}", _method(_name), None, (((4,),),), _dom,
               tags=("unary", "method")))
add(OpSpec("sgn", _by("sgn"), None, X, "real", torch_grad=False, tags=("unary",)))
add(OpSpec("clamp_min", _by("clamp_min", -0.5), None, X, "any", tags=("unary",)))
add(OpSpec("clamp_max", _by("clamp_max", 0.5), None, X, "any", tags=("unary",)))
# ("binary+": not in the int/bool dtype matrix of the "binary" family's tests)
for _name, _dom in (("hypot", "real"), ("logaddexp", "any"), ("logaddexp2", "any"),
                    ("fmax", "real"), ("fmin", "real"), ("xlogy", ("real", "positive")),
                    ("arctan2", "real")):
    add(OpSpec(_name, _by(_name), None, (((3, 4), (3, 4)), ((3, 1), (1, 4))), _dom,
               tags=("binary+",)))
# torch's gradient for copysign's `other` is a ZeroTensor (no NumPy view): gradcheck only
add(OpSpec("copysign", _by("copysign"), None, (((3, 4), (3, 4)), ((3, 1), (1, 4))), "real",
           torch_grad=False, tags=("binary+",)))
add(OpSpec("lerp", _by("lerp"), None, (((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), ())),
           tags=("binary+",)))
add(OpSpec("lerp(scalar)", lambda m, a, b: m.lerp(a, b, 0.3), None, (((3, 4), (3, 4)),),
           tags=("binary+",)))
add(OpSpec("addcmul", _by("addcmul", value=0.5), None, (((3, 4), (3, 4), (4,)),),
           tags=("binary+",)))
add(OpSpec("addcdiv", _by("addcdiv", value=2), None, (((3, 4), (3, 4), (3, 1)),),
           tags=("binary+",)))
add(OpSpec("Tensor.lerp", _method("lerp", 0.25), None, (((3, 4), (3, 4)),),
           tags=("binary+", "method")))

# ---- sorting and order statistics (no ties: the "real" domain) ----------------------------------
add(OpSpec("sort", _by("sort"), None, X3,
           kwargs=({}, {"dim": 0}, {"dim": 1, "descending": True}), tags=("sort",)))
add(OpSpec("Tensor.sort", _method("sort"), None, X, kwargs=({"descending": True},),
           tags=("sort", "method")))
add(OpSpec("argsort", _by("argsort"), None, X, out="int64", grad=False, kwargs=({}, {"dim": 0}),
           tags=("sort",)))
add(OpSpec("msort", _by("msort"), None, X, tags=("sort",)))
add(OpSpec("topk", _by("topk", 2), None, X3,
           kwargs=({}, {"dim": 0, "largest": False}, {"dim": 1}), tags=("sort",)))
add(OpSpec("Tensor.topk", _method("topk", 3), None, X, tags=("sort", "method")))
add(OpSpec("kthvalue", _by("kthvalue", 2), None, X3,
           kwargs=({}, {"dim": 1, "keepdim": True}), tags=("sort",)))
add(OpSpec("median", _by("median"), None, X3,
           kwargs=({}, {"dim": 1}, {"dim": -1, "keepdim": True}), tags=("sort",)))
add(OpSpec("nanmedian", _by("nanmedian"), None, X, kwargs=({}, {"dim": 0}), tags=("sort",)))
add(OpSpec("quantile", lambda m, x, **kw: m.quantile(x, 0.3, **kw), None, X3,
           kwargs=({}, {"dim": 1}, {"dim": 2, "keepdim": True, "interpolation": "midpoint"},
                   {"dim": 0, "interpolation": "nearest"}), tags=("sort",)))
add(OpSpec("quantile(q tensor)",
           lambda m, x: m.quantile(x, _t(m, [0.1, 0.5, 0.9], x.dtype), dim=1), None, X,
           tags=("sort",)))
add(OpSpec("nanquantile", lambda m, x: m.nanquantile(x, 0.6, dim=0), None, X,
           tags=("sort",)))
add(OpSpec("cummax", _by("cummax", 1), None, X, tags=("sort",)))
add(OpSpec("cummin", _by("cummin", 0), None, X, tags=("sort",)))
add(OpSpec("mode", _by("mode"), None, X, "intlike", grad=False, out="int64", tags=("sort",)))
add(OpSpec("unique", lambda m, x: m.unique(x, return_inverse=True, return_counts=True), None,
           X, "intlike", grad=False, out="int64", tags=("sort",)))
add(OpSpec("unique_consecutive",
           lambda m, x: m.unique_consecutive(x.flatten(), return_counts=True), None, X,
           "intlike", grad=False, out="int64", tags=("sort",)))
add(OpSpec("searchsorted", lambda m, s, v: m.searchsorted(s.sort().values, v), None,
           (((3, 4), (3, 2)), ((5,), (2, 3))), grad=False, out="int64", tags=("sort",)))
add(OpSpec("bucketize", lambda m, v, b: m.bucketize(v, b.sort().values, right=True), None,
           (((3, 4), (5,)),), grad=False, out="int64", tags=("sort",)))
add(OpSpec("histc", _by("histc", bins=5), None, X, grad=False, out="int64", tags=("sort",)))
add(OpSpec("histogram", _by("histogram", 4), None, (((10,),),), grad=False, out="int64",
           tags=("sort",)))
add(OpSpec("bincount", lambda m, w: m.bincount(_t(m, [0, 2, 2, 5]), w, minlength=7), None,
           (((4,),),), grad=False, out="int64", tags=("sort",)))

# ---- reductions ---------------------------------------------------------------------------------
add(OpSpec("nansum", _by("nansum"), None, X3, kwargs=({}, {"dim": 1}), tags=("reduce",)))
add(OpSpec("nanmean", _by("nanmean"), None, X3, kwargs=({}, {"dim": (0, 2)}),
           tags=("reduce",)))
add(OpSpec("aminmax", _by("aminmax"), None, X3, kwargs=({}, {"dim": 1, "keepdim": True}),
           tags=("reduce",)))
add(OpSpec("logcumsumexp", _by("logcumsumexp", 1), None, X3, tags=("reduce",)))
add(OpSpec("trace", _by("trace"), None, X, tags=("reduce",)))
add(OpSpec("diff", _by("diff"), None, X3,
           kwargs=({}, {"n": 2, "dim": 1}, {"dim": 0}), tags=("reduce",)))
add(OpSpec("cov", _by("cov"), None, X, kwargs=({}, {"correction": 0}), tags=("reduce",)))
add(OpSpec("corrcoef", _by("corrcoef"), None, X, tags=("reduce",)))
add(OpSpec("renorm", _by("renorm", 2, 0, 1.0), None, X, tags=("reduce",)))
add(OpSpec("dist", _by("dist"), None, (((3, 4), (3, 4)),), kwargs=({}, {"p": 3}),
           tags=("reduce",)))
add(OpSpec("trapezoid", _by("trapezoid"), None, X, kwargs=({}, {"dx": 0.5}),
           tags=("reduce",)))
add(OpSpec("cumulative_trapezoid", _by("cumulative_trapezoid"), None, X, tags=("reduce",)))

# ---- shape --------------------------------------------------------------------------------------
add(OpSpec("diagonal(3-d)", _by("diagonal", 1, 1, 2), None, X3, tags=("shape",)))
add(OpSpec("atleast_3d", _by("atleast_3d"), None, (((4,),), ((3, 4),)), tags=("shape",)))
add(OpSpec("dstack", lambda m, a, b: m.dstack([a, b]), None, (((3, 4), (3, 4)),),
           tags=("shape",)))
add(OpSpec("column_stack", lambda m, a, b: m.column_stack([a, b]), None, (((3,), (3, 2)),),
           tags=("shape",)))
add(OpSpec("tensor_split", lambda m, x, n, **kw: m.tensor_split(x, n, **kw), None, X,
           kwargs=({"n": 3, "dim": 1}, {"n": [1, 3], "dim": 1}), tags=("shape",)))
add(OpSpec("hsplit", _by("hsplit", 2), None, X, tags=("shape",)))
add(OpSpec("rot90", _by("rot90"), None, X3,
           kwargs=({}, {"k": 3, "dims": [1, 2]}, {"k": -2}), tags=("shape",)))
add(OpSpec("diag_embed", _by("diag_embed"), None, X,
           kwargs=({}, {"offset": -1, "dim1": 0, "dim2": 2}), tags=("shape",)))
add(OpSpec("diagflat", _by("diagflat"), None, (((3,),),), kwargs=({}, {"offset": 1}),
           tags=("shape",)))
add(OpSpec("block_diag", lambda m, a, b: m.block_diag(a, b), None, (((2, 3), (3,)),),
           tags=("shape",)))
add(OpSpec("meshgrid", lambda m, a, b, **kw: m.meshgrid(a, b, **kw), None, (((3,), (4,)),),
           kwargs=({"indexing": "ij"}, {"indexing": "xy"}), tags=("shape",)))
add(OpSpec("cartesian_prod", lambda m, a, b: m.cartesian_prod(a, b), None, (((3,), (2,)),),
           tags=("shape",)))
add(OpSpec("combinations", _by("combinations"), None, (((4,),),),
           kwargs=({}, {"r": 3}, {"with_replacement": True}), tags=("shape",)))
add(OpSpec("select", _by("select", 1, -1), None, X, tags=("shape",)))
add(OpSpec("repeat_interleave", _by("repeat_interleave", 2), None, X,
           kwargs=({}, {"dim": 1}), tags=("shape",)))
add(OpSpec("Tensor.unfold", _method("unfold", 1, 2, 1), None, X, tags=("shape", "method")))
add(OpSpec("select_scatter", _by("select_scatter", 1, 0), None, (((3, 4), (3,)),),
           tags=("shape",)))
add(OpSpec("slice_scatter", _by("slice_scatter", 1, 0, 4, 2), None, (((3, 4), (3, 2)),),
           tags=("shape",)))
add(OpSpec("diagonal_scatter", _by("diagonal_scatter", 1), None, (((3, 4), (3,)),),
           tags=("shape",)))

# ---- indexing -----------------------------------------------------------------------------------
add(OpSpec("scatter(src)",
           lambda m, x, s: m.scatter(x, 0, _t(m, [[0, 1, 2, 2], [1, 0, 0, 1]]), s), None,
           (((3, 4), (2, 4)),), tags=("index",)))
add(OpSpec("index_add", lambda m, x, s: m.index_add(x, 0, _t(m, [2, 0, 2]), s, alpha=2), None,
           (((3, 4), (3, 4)),), tags=("index",)))
add(OpSpec("index_copy", lambda m, x, s: m.index_copy(x, 1, _t(m, [3, 0]), s), None,
           (((3, 4), (3, 2)),), tags=("index",)))
add(OpSpec("index_fill", lambda m, x: m.index_fill(x, 1, _t(m, [0, 3]), -1.0), None, X,
           tags=("index",)))
add(OpSpec("index_put", lambda m, x, v, **kw: m.index_put(
    x, (_t(m, [0, 0, 2]), _t(m, [1, 1, 3])), v, **kw), None, (((3, 4), (3,)),),
    kwargs=({"accumulate": True},), tags=("index",)))
add(OpSpec("masked_scatter", lambda m, x, s: m.masked_scatter(
    x, _t(m, [[True, False, True, False]] * 3), s), None, (((3, 4), (8,)),), tags=("index",)))
add(OpSpec("put", lambda m, x, s, **kw: m.put(x, _t(m, [5, 0, 5]), s, **kw), None,
           (((3, 4), (3,)),), kwargs=({"accumulate": True},), tags=("index",)))


def _torch_excluding_self(red: str, fill, reduce_fn):
    """torch's amax/amin with ``include_self=False``, computed as ``include_self=True`` on an
    input whose written places hold ∓inf (``fill(x, value)``): torch 2.13's own gradient counts
    an input value equal to the result among the winners though it was not reduced, and so
    halves the sources' share (tests/test_defects.py checks chainrule's with gradcheck)."""
    if red not in ("amax", "amin"):
        return None

    def call(x, s, include_self=True):
        if include_self:
            return reduce_fn(torch_module(), x, s, red)
        return reduce_fn(torch_module(), fill(x, -math.inf if red == "amax" else math.inf), s,
                         red)
    return call


def _scatter_reduce(m, x, s, red, **kw):
    return m.scatter_reduce(x, 0, _t(m, [[0, 1, 0, 2], [0, 1, 2, 2]]), s, red, **kw)


for _red in ("sum", "mean", "prod", "amax", "amin"):
    add(OpSpec(f"scatter_reduce({_red})",
               lambda m, x, s, _r=_red, **kw: _scatter_reduce(m, x, s, _r, **kw),
               None, (((3, 4), (2, 4)),), "positive" if _red == "prod" else "real",
               kwargs=({}, {"include_self": False}), tags=("index",),
               torch_call=_torch_excluding_self(
                   _red, lambda x, v: x.scatter(0, _t(torch_module(), [[0, 1, 0, 2],
                                                                     [0, 1, 2, 2]]), v),
                   _scatter_reduce)))

# ---- matrix products and linear algebra ---------------------------------------------------------
add(OpSpec("addmm", _by("addmm"), None, (((2, 4), (2, 3), (3, 4)), ((4,), (2, 3), (3, 4))),
           kwargs=({}, {"beta": 0.5, "alpha": 2.0}), tags=("linalg",)))
add(OpSpec("addmv", _by("addmv"), None, (((2,), (2, 3), (3,)),), tags=("linalg",)))
add(OpSpec("addbmm", _by("addbmm"), None, (((2, 4), (3, 2, 3), (3, 3, 4)),),
           tags=("linalg",)))
add(OpSpec("baddbmm", _by("baddbmm"), None, (((3, 2, 4), (3, 2, 3), (3, 3, 4)),),
           kwargs=({}, {"beta": 0.0}), tags=("linalg",)))
add(OpSpec("addr", _by("addr"), None, (((2, 3), (2,), (3,)),), tags=("linalg",)))
add(OpSpec("tensordot", _by("tensordot"), None, (((2, 3, 4), (3, 4, 2)),),
           kwargs=({}, {"dims": ([1], [0])}), tags=("linalg",)))
add(OpSpec("kron", _by("kron"), None, (((2, 3), (3, 2)), ((2,), (2, 3))), tags=("linalg",)))
# torch's cdist backward is not differentiable the same way: second derivatives by gradgradcheck
add(OpSpec("cdist", _by("cdist"), None, (((3, 4), (2, 4)), ((2, 3, 4), (2, 5, 4))),
           kwargs=({}, {"p": 1.0}, {"p": 3.0}), torch_gradgrad=False, tags=("linalg",)))
add(OpSpec("cross", lambda m, a, b: m.linalg.cross(a, b), None, (((4, 3), (4, 3)),),
           tags=("linalg",)))
add(OpSpec("linalg.multi_dot", lambda m, a, b, c: m.linalg.multi_dot([a, b, c]), None,
           (((3,), (3, 4), (4, 2)),), tags=("linalg",)))
for _name in ("inv", "det", "matrix_exp"):
    add(OpSpec(f"linalg.{_name}", _by(_name, ns="linalg"), None, (((3, 3),), ((2, 3, 3),)),
               tags=("linalg",)))
add(OpSpec("linalg.slogdet", lambda m, a: m.linalg.slogdet(a).logabsdet, None, BSQ,
           tags=("linalg",)))
add(OpSpec("logdet", lambda m, a: m.logdet(a @ a.mT + m.eye(3, dtype=a.dtype)), None, SQ,
           tags=("linalg",)))
add(OpSpec("linalg.solve", _by("solve", ns="linalg"), None,
           (((3, 3), (3, 2)), ((3, 3), (3,)), ((2, 3, 3), (2, 3))),
           kwargs=({},), tags=("linalg",)))
add(OpSpec("linalg.solve(left=False)", _by("solve", ns="linalg", left=False), None,
           (((3, 3), (2, 3)),), tags=("linalg",)))
add(OpSpec("linalg.cholesky", lambda m, a, **kw: m.linalg.cholesky(
    a @ a.mT + m.eye(3, dtype=a.dtype), **kw), None, SQ, kwargs=({}, {"upper": True}),
    tags=("linalg",)))
add(OpSpec("linalg.qr", _by("qr", ns="linalg"), None, (((4, 3),), ((3, 3),)),
           tags=("linalg",)))
add(OpSpec("linalg.eigh", lambda m, a: (lambda r: (r.eigenvalues, (
    r.eigenvectors * r.eigenvalues.exp().unsqueeze(-2)) @ r.eigenvectors.mT))(
    m.linalg.eigh(a + a.mT)), None, SQ, tags=("linalg",)))
add(OpSpec("linalg.eigvalsh", lambda m, a: m.linalg.eigvalsh(a + a.mT), None, BSQ,
           tags=("linalg",)))
add(OpSpec("linalg.svd", lambda m, a: (lambda r: (
    r.S, (r.U * r.S.unsqueeze(-2)) @ r.U.mT, (r.Vh.mT * r.S.unsqueeze(-2)) @ r.Vh))(
    m.linalg.svd(a, full_matrices=False)), None, (((4, 3),), ((3, 4),)), tags=("linalg",)))
add(OpSpec("linalg.svdvals", _by("svdvals", ns="linalg"), None, (((4, 3),),),
           tags=("linalg",)))
add(OpSpec("linalg.pinv", _by("pinv", ns="linalg"), None, (((4, 3),), ((3, 4),)),
           tags=("linalg",)))
add(OpSpec("linalg.lstsq", lambda m, a, b: m.linalg.lstsq(a, b).solution, None,
           (((4, 3), (4, 2)),), tags=("linalg",)))
add(OpSpec("linalg.norm", _by("norm", ns="linalg"), None, X,
           kwargs=({}, {"ord": "fro"}, {"ord": 1}, {"ord": float("inf")}, {"dim": 1},
                   {"ord": 3, "dim": 0, "keepdim": True}), tags=("linalg",)))
add(OpSpec("linalg.vector_norm", _by("vector_norm", ns="linalg"), None, X3,
           kwargs=({}, {"ord": 1, "dim": 1}, {"ord": 3.5, "dim": (0, 2)},
                   {"ord": float("-inf"), "dim": -1, "keepdim": True}), tags=("linalg",)))
add(OpSpec("linalg.matrix_norm", _by("matrix_norm", ns="linalg"), None, X3,
           kwargs=({}, {"ord": "nuc"}, {"ord": 2}, {"ord": -1}, {"ord": float("inf")}),
           tags=("linalg",)))
add(OpSpec("linalg.matrix_power", _by("matrix_power", ns="linalg"), None, SQ,
           kwargs=({"n": 3}, {"n": -2}, {"n": 0}), tags=("linalg",)))
add(OpSpec("linalg.lu", lambda m, a: m.linalg.lu(a)[1:], None, (((3, 3),), ((2, 4, 4),)),
           tags=("linalg",)))
add(OpSpec("linalg.lu_solve", lambda m, a, b: m.linalg.lu_solve(*m.linalg.lu_factor(a), b),
           None, (((3, 3), (3, 2)),), tags=("linalg",)))
add(OpSpec("linalg.solve_triangular", _by("solve_triangular", ns="linalg", upper=True), None,
           (((3, 3), (3, 2)),), "positive", tags=("linalg",)))
add(OpSpec("linalg.cond", _by("cond", ns="linalg"), None, SQ, tags=("linalg",)))
add(OpSpec("linalg.vander", _by("vander", ns="linalg"), None, (((4,),),), tags=("linalg",)))
add(OpSpec("linalg.vecdot", _by("vecdot", ns="linalg"), None, (((3, 4), (3, 4)),),
           tags=("linalg",)))
add(OpSpec("linalg.tensorinv", lambda m, a: m.linalg.tensorinv(a.reshape(2, 2, 4)), None,
           (((4, 4),),), tags=("linalg",)))
add(OpSpec("cholesky_solve", lambda m, b, a: m.cholesky_solve(
    b, m.linalg.cholesky(a @ a.mT + m.eye(3, dtype=a.dtype))), None, (((3, 2), (3, 3)),),
    tags=("linalg",)))
add(OpSpec("pinverse", _by("pinverse"), None, (((4, 3),),), tags=("linalg",)))
add(OpSpec("svd(torch.svd)", lambda m, a: (lambda r: (r.S, (r.U * r.S.unsqueeze(-2)) @ r.U.mT))(
    m.svd(a)), None, (((4, 3),),), tags=("linalg",)))
add(OpSpec("Tensor.det", _method("det"), None, SQ, tags=("linalg", "method")))

# ---- torch's names for nn.functional functions ------------------------------------------------
add(OpSpec("torch.conv1d", _by("conv1d"), None, (((2, 3, 8), (4, 3, 3)),), tags=("nn",)))
add(OpSpec("torch.layer_norm", lambda m, x: m.layer_norm(x, (4,)), None, X, tags=("nn",)))
add(OpSpec("torch.embedding", lambda m, w: m.embedding(w, _t(m, [[0, 2], [4, 2]])), None,
           (((5, 3),),), tags=("nn",)))
add(OpSpec("torch.batch_norm", lambda m, x, w, b: m.batch_norm(
    x, w, b, None, None, True, 0.1, 1e-5, False), None, (((4, 3), (3,), (3,)),), tags=("nn",)))

# ---- torch.special functions torch gives no derivative (forward only) ---------------------------
for _name, _dom in (("bessel_j0", "any"), ("bessel_j1", "any"), ("modified_bessel_i0", "any"),
                    ("modified_bessel_i1", "any"), ("modified_bessel_k0", "positive"),
                    ("modified_bessel_k1", "positive"), ("scaled_modified_bessel_k0", "positive"),
                    ("scaled_modified_bessel_k1", "positive")):
    add(OpSpec(f"special.{_name}", _by(_name, ns="special"), None, X, _dom, grad=False,
               out="no derivative", tags=("special",)))
for _name in ("chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
              "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t",
              "shifted_chebyshev_polynomial_u", "shifted_chebyshev_polynomial_v",
              "shifted_chebyshev_polynomial_w", "hermite_polynomial_h", "hermite_polynomial_he",
              "laguerre_polynomial_l", "legendre_polynomial_p"):
    add(OpSpec(f"special.{_name}",
               lambda m, x, _n=_name: getattr(m.special, _n)(x, _t(m, [[0, 1, 2, 5]] * 3)),
               None, X, "any", grad=False, out="no derivative", tags=("special",)))

# ---- more indexing ------------------------------------------------------------------------------
for _red in ("prod", "mean", "amax", "amin"):
    add(OpSpec(f"index_reduce({_red})",
               lambda m, x, s, _r=_red, **kw: m.index_reduce(x, 0, _t(m, [2, 0, 2]), s, _r, **kw),
               None, (((3, 4), (3, 4)),), "positive" if _red == "prod" else "real",
               kwargs=({}, {"include_self": False}), tags=("index",),
               torch_call=_torch_excluding_self(
                   _red, lambda x, v: x.index_fill(0, _t(torch_module(), [2, 0, 2]), v),
                   lambda m, x, s, r: m.index_reduce(x, 0, _t(m, [2, 0, 2]), s, r))))
add(OpSpec("as_strided", _by("as_strided", (3, 3), (1, 2), 1), None, X,
           tags=("index", "storage")))
# torch's gradient for as_strided_scatter's input does not zero the written places (torch
# 2.13): checked by gradcheck against finite differences instead
add(OpSpec("as_strided_scatter", _by("as_strided_scatter", (2, 2), (1, 2)), None,
           (((3, 4), (2, 2)),), torch_grad=False, torch_gradgrad=False,
           tags=("index", "storage")))
add(OpSpec("nonzero_static", lambda m, x: m.nonzero_static(x > 0, size=8), None, X,
           grad=False, out="int64", tags=("index",)))
add(OpSpec("linalg.householder_product", _by("householder_product", ns="linalg"), None,
           (((4, 3), (2,)), ((2, 3, 3), (2, 3))), tags=("linalg",)))
