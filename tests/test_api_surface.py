"""The API a PyTorch program reaches for (issue 13, "Named by the programs"): NumPy-style
aliases, module paths, switches, cr.testing, cr.compile, and the gradient conventions the
op registry's generic tests do not pin down (repeated scatter targets, xlogy at 0, fmax ties)."""

from __future__ import annotations

import importlib
import sys
import tracemalloc

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


def _pair(shape=(3, 4), seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return cr.tensor(a), torch.tensor(a)


def _same(c, t):
    if isinstance(t, tuple):
        assert len(c) == len(t)
        for x, y in zip(c, t):
            _same(x, y)
        return
    np.testing.assert_allclose(np.asarray(c.detach().numpy(), float),
                               np.asarray(t.detach().numpy(), float), rtol=1e-12, atol=1e-12)


# ---- axis= / keepdims= --------------------------------------------------------------------------
_ALIASED = ["sum", "mean", "prod", "std", "var", "amax", "amin", "argmax", "argmin",
            "logsumexp", "all", "any", "nansum", "nanmean"]


@pytest.mark.parametrize("name", _ALIASED)
def test_axis_and_keepdims_are_aliases_of_dim_and_keepdim(name):
    c, t = _pair((2, 3, 4))
    if name in ("all", "any"):
        c, t = c > 0, t > 0
    want = getattr(torch, name)(t, axis=1, keepdims=True)
    _same(getattr(cr, name)(c, axis=1, keepdims=True), want)
    _same(getattr(c, name)(axis=1, keepdims=True), getattr(t, name)(axis=1, keepdims=True))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "cumsum", "cumprod"])
def test_axis_alias_of_single_dim_ops(name):
    c, t = _pair()
    _same(getattr(cr, name)(c, axis=1), getattr(torch, name)(t, axis=1))
    _same(getattr(c, name)(axis=0), getattr(t, name)(axis=0))


def test_axis_alias_of_max_min_norm_cat():
    c, t = _pair()
    _same(tuple(cr.max(c, axis=1)), tuple(torch.max(t, axis=1)))
    _same(tuple(c.min(axis=0, keepdims=True)), tuple(t.min(axis=0, keepdims=True)))
    _same(cr.norm(c, dim=1), torch.norm(t, dim=1))
    _same(cr.cat([c, c], axis=1), torch.cat([t, t], axis=1))


def test_dim_and_axis_together_are_refused():
    with pytest.raises(TypeError, match="axis"):
        cr.sum(cr.ones(2, 3), dim=0, axis=1)


# ---- gradients that differ from the textbook on purpose (torch's conventions) -------------------
def _grads(fn_c, fn_t, *arrays):
    cs = [cr.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    oc, ot = fn_c(*cs), fn_t(*ts)
    _same(oc, ot)
    w = np.random.default_rng(5).standard_normal(tuple(ot.shape))
    (oc * cr.tensor(w)).sum().backward()
    (ot * torch.tensor(w)).sum().backward()
    for c, t in zip(cs, ts):
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_scatter_with_repeated_targets_writes_like_torch():
    """A repeated target keeps one write (it used to sum them); each src element still gets the
    gradient at its target, and input gets none where something was written (as torch)."""
    x = np.arange(12.0).reshape(3, 4)
    src = np.arange(8.0).reshape(2, 4) + 100
    idx = [[0, 1, 0, 2], [0, 1, 2, 2]]
    _grads(lambda a, s: cr.scatter(a, 0, cr.tensor(idx), s),
           lambda a, s: torch.scatter(a, 0, torch.tensor(idx), s), x, src)
    out = cr.tensor(x).scatter(0, cr.tensor(idx), cr.tensor(src))
    assert out[0, 0].item() in (100.0, 104.0)  # one of the writes, not their sum 204


def test_xlogy_gradient_at_zero_is_torchs():
    """x·ln y at x = 0 is 0 with d/dx = 0, also where y = 0 (no 0·(-inf) = nan)."""
    x = np.array([0.0, 0.0, 2.0, 0.0])
    y = np.array([0.0, 1.0, 3.0, 2.5])
    cx, cy = cr.tensor(x, requires_grad=True), cr.tensor(y, requires_grad=True)
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    cr.xlogy(cx, cy).sum().backward()
    torch.xlogy(tx, ty).sum().backward()
    np.testing.assert_array_equal(cx.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(cy.grad.numpy(), ty.grad.numpy())  # nan at (0, 0), as torch
    assert cx.grad.numpy()[0] == 0.0


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_fmax_fmin_ties_and_nan_route_gradients_like_torch(name):
    a = np.array([1.0, 2.0, np.nan, 0.5, 3.0])
    b = np.array([1.0, 1.0, 0.0, np.nan, 4.0])
    cs = [cr.tensor(v, requires_grad=True) for v in (a, b)]
    ts = [torch.tensor(v, requires_grad=True) for v in (a, b)]
    getattr(cr, name)(*cs).sum().backward()
    getattr(torch, name)(*ts).sum().backward()
    for c, t in zip(cs, ts):
        np.testing.assert_array_equal(c.grad.numpy(), t.grad.numpy())


def test_cosine_similarity_broadcasts_like_torch():
    a = np.random.default_rng(0).standard_normal((4,))
    b = np.random.default_rng(1).standard_normal((3, 4))
    _grads(lambda x, y: cr.nn.functional.cosine_similarity(x, y, dim=0),
           lambda x, y: torch.nn.functional.cosine_similarity(x, y, dim=0), a, b)
    _grads(lambda x, y: cr.nn.functional.cosine_similarity(x, y, dim=-1),
           lambda x, y: torch.nn.functional.cosine_similarity(x, y, dim=-1),
           np.random.default_rng(2).standard_normal((2, 1, 4)),
           np.random.default_rng(3).standard_normal((1, 3, 4)))


def test_slogdet_sign_and_lu_permutation_match_torch():
    a = np.random.default_rng(0).standard_normal((2, 3, 3))
    sign, logabs = cr.linalg.slogdet(cr.tensor(a))
    ts, tl = torch.linalg.slogdet(torch.tensor(a))
    _same(sign, ts)
    assert not sign.requires_grad
    _same(tuple(cr.linalg.lu(cr.tensor(a))), tuple(torch.linalg.lu(torch.tensor(a))))
    _same(tuple(cr.linalg.lu_factor(cr.tensor(a))), tuple(torch.linalg.lu_factor(torch.tensor(a))))
    _same(tuple(cr.lu_unpack(*cr.linalg.lu_factor(cr.tensor(a)))),
          tuple(torch.lu_unpack(*torch.linalg.lu_factor(torch.tensor(a)))))


def test_svd_and_eigh_reconstruct_their_input():
    a = cr.tensor(np.random.default_rng(0).standard_normal((4, 3)))
    u, s, vh = cr.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(((u * s) @ vh).numpy(), a.numpy(), atol=1e-12)
    sym = a.mT @ a
    lam, q = cr.linalg.eigh(sym)
    np.testing.assert_allclose(((q * lam) @ q.mT).numpy(), sym.numpy(), atol=1e-12)
    assert list(np.diff(lam.numpy()) >= 0) == [True, True]


def test_linalg_errors_are_torchs():
    with pytest.raises(cr.linalg.LinAlgError, match="singular"):
        cr.linalg.inv(cr.zeros(2, 2))
    assert issubclass(cr.linalg.LinAlgError, RuntimeError)
    with pytest.raises(RuntimeError, match="square"):
        cr.linalg.det(cr.ones(2, 3))
    with pytest.raises(cr.linalg.LinAlgError, match="positive-definite"):
        cr.linalg.cholesky(-cr.eye(2))
    with pytest.raises(RuntimeError, match="1D or 2D"):
        cr.linalg.norm(cr.ones(2, 2, 2), ord=1)


# ---- module paths, namespaces, switches ---------------------------------------------------------
def test_missing_names_are_plain_attribute_errors():
    assert hasattr(cr, "anything_missing") is False
    for name in ("utils", "special", "linalg", "testing", "accelerator", "backends"):
        assert hasattr(cr, name), name


def test_utils_data_is_a_package_with_cr_data_objects():
    data = importlib.import_module("chainrule.utils.data")
    assert cr.utils.data is data
    for name in ("DataLoader", "Dataset", "TensorDataset", "RandomSampler", "random_split",
                 "default_collate", "IterableDataset", "get_worker_info"):
        assert getattr(data, name) is getattr(cr.data, name)
    from chainrule.utils.data import DataLoader  # noqa: F401  (torch's import path)


def test_nn_modules_paths_are_torchs():
    from chainrule.nn.modules.activation import MultiheadAttention
    from chainrule.nn.modules.linear import Linear
    from chainrule.nn.modules.transformer import TransformerEncoderLayer

    assert MultiheadAttention is cr.nn.MultiheadAttention
    assert Linear is cr.nn.Linear and TransformerEncoderLayer is cr.nn.TransformerEncoderLayer
    from chainrule.nn.modules.batchnorm import BatchNorm2d
    from chainrule.nn.modules.module import Module
    from chainrule.nn.modules.utils import _pair

    assert BatchNorm2d is cr.nn.BatchNorm2d and Module is cr.nn.Module
    assert _pair(3) == (3, 3) and _pair((1, 2)) == (1, 2)


def test_iterable_dataset_through_dataloader():
    class Stream(cr.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(7))

    batches = list(cr.utils.data.DataLoader(Stream(), batch_size=3))
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="shuffle"):
        cr.utils.data.DataLoader(Stream(), shuffle=True)


def test_random_sampler_with_replacement_is_lazy():
    tracemalloc.start()
    sampler = cr.utils.data.RandomSampler(range(10), replacement=True, num_samples=10**10)
    it = iter(sampler)
    first = [next(it) for _ in range(100)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(sampler) == 10**10 and all(0 <= i < 10 for i in first)
    assert peak < 5_000_000


def test_inference_mode_turns_recording_off():
    x = cr.ones(2, requires_grad=True)
    with cr.inference_mode():
        assert cr.is_inference_mode_enabled() and not cr.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert cr.is_grad_enabled() and not cr.is_inference_mode_enabled()
    with cr.inference_mode(False):
        assert (x * 2).requires_grad

    @cr.inference_mode()
    def f():
        return (x * 2).requires_grad

    @cr.inference_mode
    def g():
        return (x * 2).requires_grad

    assert f() is False and g() is False


def test_set_num_threads_sets_the_blas_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = cr.get_num_threads()
    try:
        cr.set_num_threads(1)
        assert cr.get_num_threads() == 1
        blas = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]
        assert blas and all(n == 1 for n in blas)
    finally:
        cr.set_num_threads(before)
    with pytest.raises(RuntimeError):
        cr.set_num_threads(0)


def test_accelerator_and_backend_flags():
    assert cr.accelerator.is_available() == cr.cuda.is_available()
    if not cr.cuda.is_available():
        assert cr.accelerator.current_accelerator() is None
    old = cr.backends.cudnn.benchmark
    cr.backends.cudnn.benchmark = True
    assert cr.backends.cudnn.benchmark is True
    with cr.backends.cudnn.flags(enabled=False):
        assert cr.backends.cudnn.enabled is False
    assert cr.backends.cudnn.enabled is True
    cr.backends.cudnn.benchmark = old
    assert cr.backends.cudnn.deterministic is False


def test_compile_runs_eagerly_with_torchs_arguments():
    model = cr.nn.Linear(3, 2)
    compiled = cr.compile(model, mode="max-autotune", fullgraph=True, dynamic=False)
    x = cr.ones(4, 3)
    np.testing.assert_array_equal(compiled(x).detach().numpy(), model(x).detach().numpy())

    @cr.compile(backend="eager")
    def f(t):
        return t * 2

    assert f(cr.tensor(2.0)).item() == 4.0
    assert "eager" in cr.compile.__doc__


def test_format_of_a_zero_dim_tensor_is_the_number():
    assert f"{cr.tensor(3.14159):.2f}" == f"{torch.tensor(3.14159):.2f}" == "3.14"
    assert format(cr.tensor(7), "") == format(torch.tensor(7), "") == "7"
    assert f"{cr.tensor(2.5)}" == "2.5"


# ---- cr.testing.assert_close --------------------------------------------------------------------
_CASES = [
    ([1.0, 2.0, 3.0], [1.0, 2.1, 3.0], {}),
    ([1.0, 2.0], [1.0, 2.0, 3.0], {}),
    ([[1, 2], [3, 4]], [[1, 2], [3, 5]], {}),
    ([1.0], [1.0 + 1e-6], {}),
    ([1.0], [1.1], {"rtol": 0.2, "atol": 0.0}),
    (float("nan"), float("nan"), {}),
    (float("nan"), float("nan"), {"equal_nan": True}),
]


@pytest.mark.parametrize("a,b,kw", _CASES)
def test_assert_close_agrees_with_torch(a, b, kw):
    def run(m):
        try:
            m.testing.assert_close(m.tensor(a), m.tensor(b), **kw)
            return None
        except Exception as e:  # noqa: BLE001
            return type(e), str(e).replace("torch.", "chainrule.")

    assert run(cr) == run(torch)


def test_assert_close_messages_and_containers():
    with pytest.raises(AssertionError, match="The failure occurred for item \\['a'\\]"):
        cr.testing.assert_close({"a": cr.tensor(1.0)}, {"a": cr.tensor(2.0)})
    with pytest.raises(AssertionError, match="dtype"):
        cr.testing.assert_close(cr.ones(2), cr.ones(2, dtype=cr.float64))
    with pytest.raises(ValueError, match="no atol"):
        cr.testing.assert_close(cr.ones(1), cr.ones(1), rtol=1e-3)
    with pytest.raises(AssertionError, match="custom"):
        cr.testing.assert_close(1.0, 2.0, msg="custom")
    cr.testing.assert_close([cr.ones(2), 3], [cr.ones(2), 3])


def test_new_top_level_names_agree_with_torch():
    c, t = _pair((3, 4))
    _same(cr.conv1d(cr.ones(1, 2, 5), cr.ones(3, 2, 2)), torch.conv1d(torch.ones(1, 2, 5),
                                                                      torch.ones(3, 2, 2)))
    _same(cr.embedding(c, cr.tensor([2, 0])), torch.embedding(t, torch.tensor([2, 0])))
    assert cr.finfo(cr.float32).eps == torch.finfo(torch.float32).eps
    assert cr.iinfo(cr.int16).max == torch.iinfo(torch.int16).max
    assert cr.pi == torch.pi and cr.e == torch.e
    assert cr.LongTensor([1, 2]).dtype == cr.int64 and cr.FloatTensor(2, 3).shape == (2, 3)
    assert cr.zeros(2).layout is cr.strided
    _same(cr.hann_window(6, dtype=cr.float64), torch.hann_window(6, dtype=torch.float64))
    assert cr.hann_window(6).dtype == cr.float32
    _same(cr.kaiser_window(5, True, 3.0, dtype=cr.float64),
          torch.kaiser_window(5, True, 3.0, dtype=torch.float64))
    _same(cr.tril_indices(3, 4, 1), torch.tril_indices(3, 4, 1))
    _same(cr.tensor([1, 2]) << 2, torch.tensor([1, 2]) << 2)
    _same(cr.isin(cr.tensor([1, 2, 3]), cr.tensor([2])), torch.isin(torch.tensor([1, 2, 3]),
                                                                    torch.tensor([2])))
    _same(cr.vander(cr.tensor([1.0, 2.0, 3.0])), torch.vander(torch.tensor([1.0, 2.0, 3.0])))
    assert sys.modules["chainrule"].__getattr__  # lazy names resolve through __getattr__


def test_autograd_legacy_names():
    from chainrule.autograd import Variable

    v = Variable(cr.ones(2), requires_grad=True)
    assert isinstance(v, cr.Tensor) and v.requires_grad
    assert isinstance(cr.zeros(1), Variable)
    assert cr.autograd.is_multithreading_enabled() is torch.autograd.is_multithreading_enabled()
    with cr.autograd.set_multithreading_enabled(False):
        assert cr.autograd.is_multithreading_enabled() is False
    assert cr.autograd.is_multithreading_enabled() is True


def test_special_functions_without_derivatives_are_accurate():
    """J₀, J₁ by quadrature agree with SciPy to 1e-15 (torch's are good to ~1e-8 there)."""
    sp = pytest.importorskip("scipy.special")
    x = np.array([0.0, 0.3, 2.5, 30.0, 200.0, -3.0])
    np.testing.assert_allclose(cr.special.bessel_j0(cr.tensor(x)).numpy(), sp.j0(x), atol=1e-14)
    np.testing.assert_allclose(cr.special.bessel_j1(cr.tensor(x)).numpy(), sp.j1(x), atol=1e-14)
    y = np.array([1e-3, 0.5, 4.0, 60.0])
    np.testing.assert_allclose(cr.special.modified_bessel_k1(cr.tensor(y)).numpy(), sp.k1(y),
                               rtol=1e-13)
    assert cr.special.bessel_j1(cr.tensor([0.0])).item() == 0.0


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: index_reduce is in beta
@pytest.mark.parametrize("include_self", [True, False])
def test_product_reductions_with_zero_factors_have_torchs_gradients(include_self):
    x = np.arange(12.0).reshape(3, 4)  # a zero at [0, 0]
    s = np.arange(8.0).reshape(2, 4) + 1
    s[1, 1] = 0.0
    for idx in ([0, 2], [2, 2], [0, 0]):
        _grads(lambda a, b, i=idx: cr.index_reduce(a, 0, cr.tensor(i), b, "prod",
                                                   include_self=include_self),
               lambda a, b, i=idx: torch.index_reduce(a, 0, torch.tensor(i), b, "prod",
                                                      include_self=include_self), x, s)
