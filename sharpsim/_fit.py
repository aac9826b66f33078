"""The one projected-gradient fit loop of the toolkit: ``steps`` optax steps, each followed by a projection.

Used wherever a parametric policy is fitted by gradient steps on a loss over a constraint set (the norm ball
‖θ_h‖ ≤ B of the log-linear classes, Lemma J.4; the simplex-free logits of the tabular classes): the SFT / RLHF
/ XPO fits of :mod:`sharpsim.algorithms` (through ``algorithms._common.gradient_fit``) and the numerical
sup over the Proposition E.2 class (:func:`sharpsim.ar_instances.nonclosure_fit`). Pure and jit-able; the
optimizer is any ``optax.GradientTransformation`` (its hyperparameters are static).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["projected_fit"]


def projected_fit(loss_fn: Callable, params0, project: Callable, optimizer: optax.GradientTransformation,
                  steps: int, *, opt_state=None):
    """Projected gradient descent: ``steps`` updates of ``optimizer`` on ``loss_fn``, projecting after each.

    θ_{t+1} = project(θ_t + update(∇loss(θ_t))). Stops updating at the first non-finite loss or gradient (the
    parameters stay at the last finite iterate). ``opt_state`` continues a previous fit (e.g. XPO's rounds);
    by default the optimizer starts fresh at ``params0``.

    Returns ``(params, opt_state, info)`` with ``info = {"final_loss", "nonfinite_step" (−1 if none),
    "nonfinite_loss", "nonfinite_grad_norm"}``.
    """
    state0 = optimizer.init(params0) if opt_state is None else opt_state
    dtype = jnp.result_type(float)

    def step(carry, i):
        params, state, bad_step, bad_loss, bad_gnorm = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        gnorm = optax.global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm) & (bad_step < 0)
        updates, new_state = optimizer.update(grads, state, params)
        new_params = project(optax.apply_updates(params, updates))
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_params, params)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        first_bad = (bad_step < 0) & ~ok
        bad_step = jnp.where(first_bad, i, bad_step)
        bad_loss = jnp.where(first_bad, loss.astype(dtype), bad_loss)
        bad_gnorm = jnp.where(first_bad, gnorm.astype(dtype), bad_gnorm)
        return (params, state, bad_step, bad_loss, bad_gnorm), None

    init = (params0, state0, jnp.asarray(-1, jnp.int32), jnp.asarray(0.0, dtype), jnp.asarray(0.0, dtype))
    (params, state, bad_step, bad_loss, bad_gnorm), _ = jax.lax.scan(step, init, jnp.arange(steps, dtype=jnp.int32))
    info = {
        "final_loss": loss_fn(params).astype(dtype),
        "nonfinite_step": bad_step,
        "nonfinite_loss": bad_loss,
        "nonfinite_grad_norm": bad_gnorm,
    }
    return params, state, info
