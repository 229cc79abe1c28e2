"""Jit-compiled estimators: hyperbox coordinates, endpoint classes and memorization
rates, confidence intervals, virtual-point stability, Gaussian distances, relative
distances and memorization-to-generalization transitions."""

from ._endpoints import (
    Classification as Classification,
    classify_endpoints as classify_endpoints,
    EndpointClass as EndpointClass,
)
from ._gaussian import (
    default_rtol as default_rtol,
    hellinger_squared as hellinger_squared,
    kl_divergence as kl_divergence,
    kl_infinite_data as kl_infinite_data,
)
from ._hyperbox import hyperbox_coordinates as hyperbox_coordinates
from ._intervals import (
    class_fractions as class_fractions,
    ClassFractions as ClassFractions,
    wilson_interval as wilson_interval,
)
from ._stability import (
    StabilityResult as StabilityResult,
    virtual_point_stability as virtual_point_stability,
)
