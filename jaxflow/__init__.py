"""jaxflow: a JAX simulation engine for the theory of memorization in diffusion models.

The stages, in pipeline order: [`jaxflow.data`][], [`jaxflow.denoisers`][],
[`jaxflow.training`][], [`jaxflow.flows`][], [`jaxflow.estimators`][],
[`jaxflow.studies`][], [`jaxflow.experiments`][]. A stage imports only the stages
before it.
"""

from importlib.metadata import version

from . import (
    data as data,
    denoisers as denoisers,
    estimators as estimators,
    flows as flows,
    studies as studies,
    training as training,
)
from ._distributed import initialize_distributed as initialize_distributed
from ._workarounds import configure_cpu_workarounds as configure_cpu_workarounds
from .data import GaussianStarts as GaussianStarts
from .denoisers import (
    EmpiricalOptimal as EmpiricalOptimal,
    MinNormObtuseSimplex as MinNormObtuseSimplex,
    MinNormOrthogonal as MinNormOrthogonal,
    ShallowReLU as ShallowReLU,
)
from .flows import probability_flow as probability_flow, score_flow as score_flow


__version__ = version("jaxflow")
