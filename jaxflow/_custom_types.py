"""Type aliases shared by every stage of jaxflow.

Shapes carry meaning: `n` is the training-set size, `d` the data dimension and
`batch` the number of flow trajectories. One-point functions take a `Point`; callers
batch them with `jax.vmap`.
"""

from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Bool, Float, Int


Point: TypeAlias = Float[Array, " d"]
Points: TypeAlias = Float[Array, "n d"]
Batch: TypeAlias = Float[Array, "batch d"]
Sigma: TypeAlias = Float[ArrayLike, ""]
Scalar: TypeAlias = Float[Array, ""]
Labels: TypeAlias = Int[Array, " batch"]
Vertices: TypeAlias = Bool[Array, "batch n"]
PRNGKey: TypeAlias = Any
