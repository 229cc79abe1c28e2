import diffrax as dfx
import equinox as eqx
import jax
from jaxtyping import Array, Bool, Float, Int


class RESULTS(dfx.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """The status of each trajectory of a flow: `diffrax.RESULTS` (`successful`,
    `max_steps_reached`, ...) plus `nonfinite_state`.

    A fixed-grid solve cannot notice a state that blows up: diffrax steps on to the end
    and reports `successful`. The flows therefore check every saved state and mark a
    trajectory whose state is not finite with `nonfinite_state`. Convert a
    `diffrax.RESULTS` with `RESULTS.promote`.
    """

    nonfinite_state = (
        "The state of a trajectory became non-finite (inf or NaN): the denoiser returned "
        "a non-finite value, or the steps are too large for it. Pass `throw=False` and "
        "read `FlowSolution.result` to see which trajectories failed."
    )


class FlowSolution(eqx.Module):
    """The result of a batched flow solve.

    **Fields:**

    - `ys`: the endpoints, shape `(batch, d)`.
    - `ts`: the times (noise levels for the probability flow) at which `trajectory`
      was saved, shape `(save,)`, or `None`.
    - `trajectory`: the states at `ts`, shape `(batch, save, d)`, or `None`.
    - `result`: a [`jaxflow.flows.RESULTS`][] per trajectory, shape `(batch,)`:
      `RESULTS.successful` where the solve finished with a finite state.
    - `num_steps`: accepted solver steps per trajectory, shape `(batch,)`.
    """

    ys: Float[Array, "batch d"]
    ts: Float[Array, " save"] | None
    trajectory: Float[Array, "batch save d"] | None
    result: RESULTS
    num_steps: Int[Array, " batch"]

    @property
    def successful(self) -> Bool[Array, "*vmap batch"]:
        """A boolean per trajectory: the solve finished and every saved state is finite.
        A JAX array, so it can be read inside `jit` and `vmap`."""
        return self.result == RESULTS.successful

    def raise_on_failure(self) -> "FlowSolution":
        """Raise an `equinox.EquinoxRuntimeError` (a `RuntimeError`) carrying the failed
        trajectory's `result` message if any trajectory failed; else return the solution.

        The check runs inside the traced program (`eqx.error_if`), so it also works under
        `jax.jit` and `jax.vmap`. Use the returned solution: the check is attached to its
        `ys`.
        """
        return eqx.tree_at(lambda s: s.ys, self, _error_if_failed(self.result, self.ys))


def _check_rows(result: RESULTS, ys: Float[Array, "batch d"]) -> Float[Array, "batch d"]:
    # Per row, so that the enumeration's index is a scalar and equinox raises with the
    # message of the row's own failure. Under `filter_jit` (a no-op inside an outer trace)
    # an eager call raises a readable `EquinoxRuntimeError`.
    return jax.vmap(lambda y, r: r.error_if(y, r != RESULTS.successful))(ys, result)


_error_if_failed = eqx.filter_jit(_check_rows)
_error_if_failed_donating = eqx.filter_jit(_check_rows, donate="all-except-first")


def raise_on_failure_in_place(solution: FlowSolution) -> FlowSolution:
    """[`FlowSolution.raise_on_failure`][] for a solution whose `ys` nothing else holds
    (a solver's own output): they are donated, so the check copies no endpoints (a
    batch's worth of memory after a chunked solve)."""
    return eqx.tree_at(
        lambda s: s.ys, solution, _error_if_failed_donating(solution.result, solution.ys)
    )
