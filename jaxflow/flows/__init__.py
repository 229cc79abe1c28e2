"""Probability flow and score flow on diffrax, batched over many starts, chunked with
bounded memory and split across every device."""

from ._affine import gaussian_probability_flow as gaussian_probability_flow
from ._chunking import (
    block_size as block_size,
    blockwise as blockwise,
    map_chunks as map_chunks,
)
from ._exact import (
    exact_probability_flow as exact_probability_flow,
    score_flow_limit as score_flow_limit,
)
from ._heun import ExplicitHeun as ExplicitHeun
from ._one_step import (
    COVARIANCE_CONVENTIONS as COVARIANCE_CONVENTIONS,
    one_step_gaussian as one_step_gaussian,
)
from ._probability import (
    edm_vector_field as edm_vector_field,
    probability_flow as probability_flow,
)
from ._schedules import (
    AbstractSchedule as AbstractSchedule,
    Geometric as Geometric,
    Karras as Karras,
)
from ._score import score_flow as score_flow, score_vector_field as score_vector_field
from ._solution import FlowSolution as FlowSolution, RESULTS as RESULTS
