"""A tiny experiment whose numbers depend on the per-device batch shape if trials are split over devices.

Each trial sums three normals. XLA's CPU backend reduces a large ``[T, 3]`` batch with another kernel (and
another summation order) than a small one, so when a run spread one setting's T trials over D devices the
sums on 4 devices (batches of T/4) differed in the last bit from those on one device (a batch of T). The
runner now runs each setting whole on one device; ``tests/test_run_safety.py`` checks the rows match.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.runner import Check, Experiment, column


def settings(mode):
    return [{"scale": s} for s in (1.0, 2.0)]


@jax.jit
def _normals(keys):
    return jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)


@jax.jit
def _row_sums(x, scale):
    return scale * x.sum(-1)


def run_setting(keys, setting, mode):
    sums = _row_sums(_normals(keys), jnp.float32(setting["scale"]))
    return [{"trial": t, "queries": 0, "metric": "sum", "value": float(v)} for t, v in enumerate(np.asarray(sums))]


def analyze(rows, mode):
    v = column(rows, "value")
    return {"checks": [Check("mean sum", 0.0, float(v.mean()), float(v.min()), float(v.max()),
                             "consistent").as_dict()], "sum_of_values": float(v.sum())}


def plot(rows, summary, out_dir):
    return []


EXPERIMENT = Experiment(
    name="toy_reduction", title="Toy reduction", claim="Sums of normals.", paper_refs=("none",),
    instance="none", sweep="scale", algorithms=(), bounds=(), predicted="mean 0",
    how_to_read="-", settings=settings, run_setting=run_setting, analyze=analyze, plot=plot,
    trials={"quick": 4096, "full": 4096},
)
