import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int


@jax.jit
def _finite_rows(ys: Float[Array, "batch d"]) -> Bool[Array, " batch"]:
    # Reduced where `ys` lives, in one fused kernel: no host copy of the endpoints and no
    # (batch, d) temporary, so checking a chunked solve keeps its memory bounded.
    return jnp.all(jnp.isfinite(ys), axis=-1)


class FlowSolution(eqx.Module):
    """The result of a batched flow solve.

    **Fields:**

    - `ys`: the endpoints, shape `(batch, d)`.
    - `ts`: the times (noise levels for the probability flow) at which `trajectory`
      was saved, shape `(save,)`, or `None`.
    - `trajectory`: the states at `ts`, shape `(batch, save, d)`, or `None`.
    - `result`: a `diffrax.RESULTS` per trajectory; `RESULTS.successful` where the
      solve finished.
    - `num_steps`: accepted solver steps per trajectory, shape `(batch,)`.
    """

    ys: Float[Array, "batch d"]
    ts: Float[Array, " save"] | None
    trajectory: Float[Array, "batch save d"] | None
    result: dfx.RESULTS
    num_steps: Int[Array, " batch"]

    @property
    def successful(self) -> np.ndarray:
        """A boolean per trajectory: the solve finished and its endpoint is finite."""
        ok = np.asarray(self.result == dfx.RESULTS.successful)
        return ok & np.asarray(_finite_rows(self.ys))

    def raise_on_failure(self) -> "FlowSolution":
        """Raise a `RuntimeError` naming the failed trajectories, if any; else return self."""
        failed = np.flatnonzero(~self.successful)
        if failed.size:
            raise RuntimeError(
                f"{failed.size} of {self.ys.shape[0]} trajectories failed (first indices: "
                f"{failed[:10].tolist()}): the solver hit `max_steps` or the state became "
                "non-finite. Raise `max_steps`, loosen `rtol`/`atol`, or check the "
                "denoiser; pass `throw=False` to read each trajectory's `result` instead."
            )
        return self
