"""Jit-compiled estimators: hyperbox coordinates, endpoint classes and memorization
rates, confidence intervals, virtual-point stability, Gaussian distances, relative
distances and memorization-to-generalization transitions. The pipelines that draw data
and fit before estimating are [`jaxflow.studies`][]'s."""

from ._endpoints import (
    Classification as Classification,
    classify_endpoints as classify_endpoints,
    EndpointClass as EndpointClass,
)
from ._gaussian import (
    default_rtol as default_rtol,
    hellinger_squared as hellinger_squared,
    isotropic_divergences as isotropic_divergences,
    kl_divergence as kl_divergence,
    kl_infinite_data as kl_infinite_data,
)
from ._hyperbox import hyperbox_coordinates as hyperbox_coordinates
from ._intervals import (
    class_fractions as class_fractions,
    ClassFractions as ClassFractions,
    wilson_interval as wilson_interval,
)
from ._kernel import (
    KernelMixture as KernelMixture,
    l2_distance as l2_distance,
    log_l2_distance as log_l2_distance,
    pair_sums as pair_sums,
    PairSums as PairSums,
)
from ._one_step import one_step_distances as one_step_distances
from ._reference import reference_hellinger_squared as reference_hellinger_squared
from ._relative import (
    ARITHMETICS as ARITHMETICS,
    relative_distance as relative_distance,
    RelativeDistance as RelativeDistance,
)
from ._stability import (
    StabilityResult as StabilityResult,
    virtual_point_stability as virtual_point_stability,
)
from ._transitions import (
    transition_point as transition_point,
    transition_probability as transition_probability,
    TransitionPoint as TransitionPoint,
    TransitionProbability as TransitionProbability,
)
