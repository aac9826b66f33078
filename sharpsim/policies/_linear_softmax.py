"""The multi-layer linear softmax class Π_{φ,B,H} of Appendix E.

    π_θ(y_{1:H}|x) = ∏_{h=1}^H π_{θ_h}(y_h | x, y_{1:h-1}),
    π_{θ_h}(y_h | x, y_{1:h-1}) ∝ exp⟨φ_h(x, y_{1:h}), θ_h⟩,      ‖θ_h‖_2 ≤ B for all h.

Feature maps are user functions ``features(x, y, h) -> [d]`` (pure JAX, traceable) with the convention,
0-indexed: ``h`` is the position of the token being scored, ``y`` is an ``[H]`` int buffer whose entries
``y[:h+1]`` are y_{1:h+1} in the paper's 1-indexed notation (``y[h]`` the candidate token) and whose entries
after ``h`` are zero padding. φ must not depend on the padding (mask with ``jnp.arange(H) <= h``).
Sampling and evaluation cost O(H · V · cost(φ)) (poly(H, |V|, d), App. E).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sharpsim._validation import check_positive, check_positive_int, is_concrete
from sharpsim.policies._autoregressive import AutoregressivePolicy, _check_eos

__all__ = ["LinearSoftmaxPolicy", "project_to_norm_ball"]

FeatureMap = Callable[[Array, Array, Array], Array]


def project_to_norm_ball(theta: Float[Array, "H d"], norm_bound: float) -> Float[Array, "H d"]:
    """Euclidean projection of each θ_h onto {‖θ_h‖_2 ≤ B} (the constraint set of Π_{φ,B,H})."""
    norms = jnp.linalg.norm(theta, axis=-1, keepdims=True)
    scale = jnp.minimum(1.0, norm_bound / jnp.maximum(norms, jnp.finfo(theta.dtype).tiny))
    return theta * scale


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearSoftmaxPolicy(AutoregressivePolicy):
    """π_θ in the multi-layer linear softmax class of Appendix E (θ is the only pytree leaf).

    Build with :meth:`create`, which validates the feature map's output shape and the norm bound.

    >>> import jax.numpy as jnp
    >>> def phi(x, y, h):  # one-hot of the current token: d = V = 3
    ...     return jax.nn.one_hot(y[h], 3)
    >>> import jax
    >>> pi = LinearSoftmaxPolicy.create(jnp.zeros((2, 3)), phi, num_prompts=1, vocab_size=3, norm_bound=1.0)
    >>> round(float(jnp.exp(pi.log_prob(0, jnp.array([0, 2])))), 4)
    0.1111
    """

    theta: Float[Array, "H d"]
    features: FeatureMap = dataclasses.field(metadata=dict(static=True))
    num_prompts: int = dataclasses.field(metadata=dict(static=True))
    vocab_size: int = dataclasses.field(metadata=dict(static=True))
    norm_bound: float | None = dataclasses.field(default=None, metadata=dict(static=True))
    eos_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    @classmethod
    def create(
        cls,
        theta: Float[Array, "H d"],
        features: FeatureMap,
        *,
        num_prompts: int,
        vocab_size: int,
        norm_bound: float | None = None,
        eos_id: int | None = None,
    ) -> "LinearSoftmaxPolicy":
        """Validated constructor.

        Raises ``ValueError`` when θ is not ``[H, d]``, when ``features(x, y, h)`` does not return a ``[d]``
        float vector for an ``[H]`` int buffer, or when some ‖θ_h‖ exceeds ``norm_bound`` (project first
        with :func:`project_to_norm_ball`).
        """
        num_prompts = check_positive_int(num_prompts, "num_prompts")
        vocab_size = check_positive_int(vocab_size, "vocab_size")
        theta = jnp.asarray(theta, dtype=jnp.result_type(float))
        if theta.ndim != 2:
            raise ValueError(f"theta must have shape [H, d] (one parameter vector per position), got {theta.shape}.")
        H, d = theta.shape
        try:
            out = jax.eval_shape(features, jnp.zeros((), jnp.int32), jnp.zeros((H,), jnp.int32), jnp.zeros((), jnp.int32))
        except Exception as err:  # noqa: BLE001 - report any tracing failure as a clear ValueError
            raise ValueError(
                "features(x, y, h) failed on x: int32[], y: int32[H], h: int32[] (it must be a traceable JAX "
                f"function): {err}"
            ) from err
        if not hasattr(out, "shape") or tuple(out.shape) != (d,):
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(
                f"features(x, y, h) must return a vector of shape [d] = ({d},) to match theta [H, d] = {theta.shape}, "
                f"got {got}."
            )
        if not jnp.issubdtype(out.dtype, jnp.floating) and not jnp.issubdtype(out.dtype, jnp.integer):
            raise ValueError(f"features must return numbers, got dtype {out.dtype}.")
        if norm_bound is not None:
            check_positive(norm_bound, "norm_bound")
            if is_concrete(theta):
                norms = np.linalg.norm(np.asarray(theta, dtype=np.float64), axis=-1)
                if np.any(norms > norm_bound * (1 + 1e-5)):
                    raise ValueError(
                        f"‖θ_h‖_2 = {norms.max():.6g} exceeds norm_bound B = {norm_bound}; project with "
                        "project_to_norm_ball(theta, B) or raise the bound."
                    )
        return cls(theta=theta, features=features, num_prompts=num_prompts, vocab_size=vocab_size,
                   norm_bound=None if norm_bound is None else float(norm_bound), eos_id=_check_eos(eos_id, vocab_size))

    @property
    def horizon(self) -> int:
        return self.theta.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.theta.shape[1]

    def feature_matrix(self, x, prefix, h) -> Float[Array, "V d"]:
        """φ_h(x, (y_{<h}, v)) for every candidate token v, with padding after position h zeroed."""
        H = self.horizon
        base = jnp.where(jnp.arange(H) < h, prefix, 0).astype(jnp.int32)
        cands = jax.vmap(lambda v: base.at[h].set(v))(jnp.arange(self.vocab_size, dtype=jnp.int32))
        return jax.vmap(lambda y: self.features(x, y, h))(cands).astype(self.theta.dtype)

    def _logits_at(self, x, prefix, h):
        # Full float32 (no TF32 on GPUs): sampled and scored log-probs must agree exactly.
        return jnp.matmul(self.feature_matrix(x, prefix, h), self.theta[h], precision=jax.lax.Precision.HIGHEST)

    def with_theta(self, theta: Float[Array, "H d"]) -> "LinearSoftmaxPolicy":
        """Same class (features, sizes, bound), new parameters; no checks, so usable under ``jit``/``grad``."""
        return dataclasses.replace(self, theta=theta)

    def __repr__(self) -> str:
        return (f"LinearSoftmaxPolicy(X={self.num_prompts}, H={self.horizon}, V={self.vocab_size}, d={self.feature_dim}, "
                f"B={self.norm_bound}, eos_id={self.eos_id})")
