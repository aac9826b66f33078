"""A tiny experiment for the runner's tests: best-of-N success on a two-response policy.

``SHARPSIM_TOY_SLEEP`` (seconds per setting) and ``SHARPSIM_TOY_LOG`` (a file that records which settings
ran) let the tests interrupt a run and check what a resumed run recomputes.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import sharpsim
from sharpsim.plotting import new_figure, save_figure
from sharpsim.runner import Check, Experiment, column, rows_where


def settings(mode):
    return [{"p": p} for p in (0.1, 0.2, 0.4)]


def run_setting(keys, setting, mode):
    if os.environ.get("SHARPSIM_TOY_LOG"):
        with open(os.environ["SHARPSIM_TOY_LOG"], "a") as f:
            f.write(f"{setting['p']}\n")
    time.sleep(float(os.environ.get("SHARPSIM_TOY_SLEEP", "0")))
    pi = sharpsim.TabularPolicy.from_probs(np.array([[setting["p"], 1 - setting["p"]]]))
    N = 4
    # the mode (response 1 for p < 1/2) is found iff one of the N draws hits it
    hit = jax.jit(jax.vmap(lambda k: sharpsim.best_of_n(k, pi, 0, N).response == 1))(keys)
    return [{"trial": t, "queries": N, "metric": "success", "value": float(v)} for t, v in enumerate(np.asarray(hit))]


def analyze(rows, mode):
    rate = float(np.mean(column(rows_where(rows, metric="success"), "value")))
    return {"checks": [Check("mean success", 1.0, rate, rate, rate, "consistent" if rate > 0.5 else "inconsistent").as_dict()]}


def plot(rows, summary, out_dir):
    fig, (ax, _) = new_figure(2)
    ax.plot(column(rows, "p"), column(rows, "value"), ".")
    return save_figure(fig, out_dir / "toy")


EXPERIMENT = Experiment(
    name="toy", title="Toy best-of-N", claim="Best-of-4 finds the mode.", paper_refs=("Proposition C.1",),
    instance="two responses", sweep="p", algorithms=("best_of_n",), bounds=(), predicted="success → 1",
    how_to_read="Dots are trials.", settings=settings, run_setting=run_setting, analyze=analyze, plot=plot,
    trials={"quick": 8, "full": 8},
)
