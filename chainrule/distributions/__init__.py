"""Probability distributions with PyTorch's ``torch.distributions`` API.

``Normal(loc, scale).rsample()`` is differentiable in ``loc`` and ``scale`` (reparameterized);
``log_prob``, ``entropy``, ``cdf``, ``icdf`` and ``kl_divergence`` are differentiable too.
Sampling draws from chainrule's random stream the way torch's samplers draw from torch's.
"""

from chainrule.distributions import constraints, transforms
from chainrule.distributions.constraint_registry import biject_to, transform_to
from chainrule.distributions.bernoulli import Bernoulli
from chainrule.distributions.beta import Beta
from chainrule.distributions.binomial import Binomial
from chainrule.distributions.categorical import Categorical
from chainrule.distributions.cauchy import Cauchy
from chainrule.distributions.chi2 import Chi2
from chainrule.distributions.continuous_bernoulli import ContinuousBernoulli
from chainrule.distributions.dirichlet import Dirichlet
from chainrule.distributions.distribution import Distribution
from chainrule.distributions.exp_family import ExponentialFamily
from chainrule.distributions.exponential import Exponential
from chainrule.distributions.fishersnedecor import FisherSnedecor
from chainrule.distributions.gamma import Gamma
from chainrule.distributions.generalized_pareto import GeneralizedPareto
from chainrule.distributions.geometric import Geometric
from chainrule.distributions.gumbel import Gumbel
from chainrule.distributions.half_cauchy import HalfCauchy
from chainrule.distributions.half_normal import HalfNormal
from chainrule.distributions.independent import Independent
from chainrule.distributions.inverse_gamma import InverseGamma
from chainrule.distributions.kl import kl_divergence, register_kl
from chainrule.distributions.kumaraswamy import Kumaraswamy
from chainrule.distributions.laplace import Laplace
from chainrule.distributions.lkj_cholesky import LKJCholesky
from chainrule.distributions.log_normal import LogNormal
from chainrule.distributions.logistic_normal import LogisticNormal
from chainrule.distributions.lowrank_multivariate_normal import LowRankMultivariateNormal
from chainrule.distributions.mixture_same_family import MixtureSameFamily
from chainrule.distributions.multinomial import Multinomial
from chainrule.distributions.multivariate_normal import MultivariateNormal
from chainrule.distributions.negative_binomial import NegativeBinomial
from chainrule.distributions.normal import Normal
from chainrule.distributions.one_hot_categorical import (
    OneHotCategorical, OneHotCategoricalStraightThrough,
)
from chainrule.distributions.pareto import Pareto
from chainrule.distributions.poisson import Poisson
from chainrule.distributions.relaxed_bernoulli import RelaxedBernoulli
from chainrule.distributions.relaxed_categorical import RelaxedOneHotCategorical
from chainrule.distributions.studentT import StudentT
from chainrule.distributions.transformed_distribution import TransformedDistribution
from chainrule.distributions.transforms import (
    AbsTransform, AffineTransform, CatTransform, ComposeTransform, CorrCholeskyTransform,
    CumulativeDistributionTransform, ExpTransform, IndependentTransform, LowerCholeskyTransform,
    PositiveDefiniteTransform, PowerTransform, ReshapeTransform, SigmoidTransform,
    SoftmaxTransform, SoftplusTransform, StackTransform, StickBreakingTransform, TanhTransform,
    Transform, identity_transform,
)
from chainrule.distributions.uniform import Uniform
from chainrule.distributions.von_mises import VonMises
from chainrule.distributions.weibull import Weibull
from chainrule.distributions.wishart import Wishart

__all__ = [
    "Bernoulli", "Beta", "Binomial", "Categorical", "Chi2", "Dirichlet", "Distribution",
    "Exponential", "ExponentialFamily", "Gamma", "Independent", "Laplace", "LogNormal",
    "Multinomial", "MultivariateNormal", "Normal", "OneHotCategorical",
    "OneHotCategoricalStraightThrough", "Poisson", "RelaxedBernoulli",
    "RelaxedOneHotCategorical", "TransformedDistribution", "Uniform", "kl_divergence",
    "register_kl", "constraints", "transforms", "AbsTransform", "AffineTransform",
    "ComposeTransform", "ExpTransform", "IndependentTransform", "PowerTransform",
    "ReshapeTransform", "SigmoidTransform", "SoftmaxTransform", "SoftplusTransform",
    "StickBreakingTransform", "TanhTransform", "Transform", "identity_transform", "Cauchy",
    "Geometric", "Gumbel", "HalfCauchy", "HalfNormal", "InverseGamma", "Kumaraswamy", "Pareto",
    "StudentT", "Weibull", "FisherSnedecor", "LogisticNormal", "MixtureSameFamily",
    "NegativeBinomial", "biject_to", "transform_to", "CatTransform", "CorrCholeskyTransform",
    "CumulativeDistributionTransform", "LowerCholeskyTransform", "PositiveDefiniteTransform",
    "StackTransform", "ContinuousBernoulli", "LowRankMultivariateNormal", "GeneralizedPareto",
    "VonMises", "LKJCholesky", "Wishart",
]
