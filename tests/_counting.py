"""A base policy that counts every draw and every likelihood evaluation made through it (host callbacks).

Used to check that an algorithm's reported ``num_queries`` equals what it actually drew from π_base.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.policies import TabularPolicy


class Counter:
    def __init__(self):
        self.draws = 0
        self.evals = 0

    def reset(self):
        self.draws = self.evals = 0


COUNTER = Counter()


def _add_draws(a):
    COUNTER.draws += int(np.size(a))


def _add_evals(a):
    COUNTER.evals += int(np.size(a))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CountingPolicy:
    inner: TabularPolicy

    @property
    def log_probs(self):
        return self.inner.log_probs

    @property
    def num_prompts(self):
        return self.inner.num_prompts

    @property
    def num_responses(self):
        return self.inner.num_responses

    def to_tabular(self):  # for exact metrics only (not a query)
        return self.inner

    def log_prob(self, x, y):
        out = self.inner.log_prob(x, y)
        jax.debug.callback(_add_evals, out)  # `out` is batched under vmap, so every pair is counted
        return out

    def sample_and_log_prob(self, key, x, num):
        ys, lps = self.inner.sample_and_log_prob(key, x, num)
        jax.debug.callback(_add_draws, lps)  # one entry per draw
        return ys, lps
