"""The one projected-gradient fit loop (sharpsim._fit.projected_fit)."""

import jax.numpy as jnp
import numpy as np
import optax

from sharpsim._fit import projected_fit


def _ball(theta, radius=1.0):
    n = jnp.linalg.norm(theta)
    return jnp.where(n > radius, theta * radius / n, theta)


def test_projected_fit_reaches_the_constrained_minimiser():
    # Catches: a loop that forgets to project (it would reach c = (3, 4), outside the ball) or projects before
    # the update. argmin_{‖θ‖ ≤ 1} ‖θ − c‖² is c/‖c‖ = (0.6, 0.8), by hand.
    c = jnp.array([3.0, 4.0])
    params, _, info = projected_fit(lambda t: jnp.sum((t - c) ** 2), jnp.zeros(2), _ball, optax.sgd(0.1), 200)
    np.testing.assert_allclose(np.asarray(params), [0.6, 0.8], atol=1e-5)
    assert int(info["nonfinite_step"]) == -1
    np.testing.assert_allclose(float(info["final_loss"]), (5.0 - 1.0) ** 2, rtol=1e-5)


def test_projected_fit_stops_at_the_first_nonfinite_loss():
    # Catches: NaN parameters after a non-finite loss (the loop must freeze at the iterate where the loss first
    # is non-finite and say at which step). The loss is NaN once θ > 0.25; by hand, SGD at rate 0.1 on (θ − 1)²
    # goes 0 → 0.2 → 0.36, whose loss is NaN at step 2: θ stays 0.36 for the 8 remaining steps.
    loss = lambda t: jnp.where(t[0] > 0.25, jnp.nan, (t[0] - 1.0) ** 2)  # noqa: E731
    params, _, info = projected_fit(loss, jnp.zeros(1), lambda t: t, optax.sgd(0.1), 10)
    np.testing.assert_allclose(np.asarray(params), [0.36], rtol=1e-6)
    assert int(info["nonfinite_step"]) == 2 and np.isnan(float(info["nonfinite_loss"]))
