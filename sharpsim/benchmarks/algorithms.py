"""Benchmark: trials/s of SFT-sharpening and XPO on the Theorem 3.1′ hard instance, JAX vs vectorised NumPy.

* ``sft``: hard instance (quick: d = M = 16, n = N = 100; ``--full``: d = M = 64, i.e. X = Y = 65, with
  n·N = 10⁵ and 10⁶ queries per trial), class BoN-closed; JAX = ``jit(vmap(sft_sharpening))`` over trials
  (``lax.map`` over batches of trials when ~2^24 draws would not fit at once); NumPy = the same algorithm
  (inverse-CDF draws, best-of-N, count table, einsum MLE over [X, K, Y]) vectorised within a trial, trials in
  a loop; PyTorch = the same vectorised over trials, in chunks of at most 256 trials.
* ``xpo``: Algorithm 1 over the same finite class, T rounds (quick 100, ``--full`` 1000), running
  per-candidate sums; JAX = ``jit(vmap(xpo_sharpening))``; NumPy and PyTorch = the same rounds vectorised
  across trials (a loop over T).

Every side times all :data:`TRIALS` = 1024 trials of a row. Compile time is reported apart; timings are the
median of ``reps`` calls after a warm-up, with ``block_until_ready`` on every output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim import SampleEvaluateOracle, instances
from sharpsim.algorithms import SFTConfig, XPOConfig, sft_sharpening, xpo_sharpening
from sharpsim.benchmarks._timing import (environment, moments_agree, time_jax, time_numpy, time_torch,
                                         torch_or_none, with_peers)
from sharpsim.classes import FiniteClass

#: trials timed per row, on every side (JAX, NumPy, PyTorch): enough to measure throughput (issue 17)
TRIALS = 1024


# ------------------------------------------------------------------------------------------- NumPy SFT
def _np_sample(rng, cdf, x, shape):
    """Inverse-CDF draws y ~ π(·|x) for a [X, Y] cdf, vectorised: searchsorted in x + cdf (offset rows)."""
    X, Y = cdf.shape
    flat = (np.arange(X)[:, None] + cdf).ravel()
    u = rng.random(shape) * cdf[x, -1].reshape(x.shape + (1,) * (len(shape) - x.ndim))
    xb = x.reshape(x.shape + (1,) * (len(shape) - x.ndim))
    idx = np.searchsorted(flat, xb + u, side="right")
    return np.clip(idx - xb * Y, 0, Y - 1)


def _np_sft_trial(rng, log_pb, mu, cls_lp, n, N):
    probs = np.exp(log_pb)
    cdf = np.cumsum(probs, axis=1)
    x = rng.choice(len(mu), size=n, p=mu)
    ys = _np_sample(rng, cdf, x, (n, N))
    lps = log_pb[x[:, None], ys]
    picks = ys[np.arange(n), np.argmax(lps, axis=1)]
    counts = np.zeros_like(probs)
    np.add.at(counts, (x, picks), 1.0)
    finite = np.isfinite(cls_lp)
    ll = np.einsum("xky,xy->xk", np.where(finite, cls_lp, 0.0), counts)
    bad = np.einsum("xky,xy->xk", (~finite).astype(counts.dtype), counts)
    return np.argmax(np.where(bad > 0, -np.inf, ll), axis=1)


# ------------------------------------------------------------------------------------------- PyTorch SFT
def _torch_sft_trials(torch, gen, log_pb, mu, cls_lp, n, N, trials):
    """The NumPy SFT trial in PyTorch, vectorised over trials too: draws, best-of-N, count table, MLE."""
    X, K, Y = cls_lp.shape
    cdf = torch.cumsum(torch.exp(log_pb), 1)
    x = torch.multinomial(mu, trials * n, replacement=True, generator=gen).reshape(trials, n)
    u = torch.rand((trials, n, N), generator=gen, dtype=cdf.dtype, device=cdf.device) * cdf[x, -1:]
    ys = torch.searchsorted(cdf[x], u, right=True).clamp_(max=Y - 1)  # [trials, n, N]
    lps = torch.gather(log_pb[x], 2, ys)
    picks = torch.gather(ys, 2, lps.argmax(2, keepdim=True))[..., 0]  # [trials, n]
    counts = torch.zeros((trials, X * Y), dtype=cdf.dtype, device=cdf.device)
    counts.scatter_add_(1, x * Y + picks, torch.ones_like(picks, dtype=cdf.dtype)).reshape(trials, X, Y)
    counts = counts.reshape(trials, X, Y)
    finite = torch.isfinite(cls_lp)
    ll = torch.einsum("xky,txy->txk", torch.where(finite, cls_lp, 0.0), counts)
    bad = torch.einsum("xky,txy->txk", (~finite).to(counts.dtype), counts)
    return torch.where(bad > 0, -torch.inf, ll).argmax(2)


# ------------------------------------------------------------------------------------------- NumPy XPO
def _np_xpo(rng, log_pb, mu, cls_lp, T, beta, alpha, E, cands, trials):
    X, K, Y = cls_lp.shape
    cdf_b = np.cumsum(np.exp(log_pb), axis=1)
    S = np.zeros((trials, X, K))
    idx = np.zeros((trials, X), np.int64)
    hist = np.zeros((T, trials, X), np.int64)
    ar = np.arange(trials)

    def contrib(x, y, yt, ry, ryt):
        lpy, lpt = cls_lp[x, :, y], cls_lp[x, :, yt]  # [trials, K]
        with np.errstate(invalid="ignore"):
            res = beta * (lpy - ry[:, None]) - beta * (lpt - ryt[:, None]) - (ry - ryt)[:, None]
            return np.where(np.isfinite(res), alpha * lpt + res**2, np.inf)

    for t in range(T):
        x = rng.choice(X, size=trials, p=mu)
        if t == 0:
            y = _np_sample(rng, cdf_b, x, (trials,))
        else:
            rows = np.exp(cls_lp[x, idx[ar, x]])
            cdf = np.cumsum(rows, axis=1)
            u = rng.random(trials) * cdf[:, -1]
            y = np.minimum((cdf <= u[:, None]).sum(1), Y - 1)
        yt = _np_sample(rng, cdf_b, x, (trials,))
        S[ar, x] += contrib(x, y, yt, log_pb[x, y], log_pb[x, yt])
        idx[ar, x] = np.argmin(np.where(np.isnan(S[ar, x]), np.inf, S[ar, x]), axis=1)
        hist[t] = idx
    J = np.zeros((trials, len(cands)))
    for c, it in enumerate(cands):
        xs = rng.choice(X, size=(trials, E), p=mu)
        if it == 0:
            ys = _np_sample(rng, cdf_b, xs, (trials, E))
            lp = log_pb[xs, ys]
        else:
            tab = cls_lp[np.arange(X)[None, :], hist[it - 1]]  # [trials, X, Y]
            cdf = np.cumsum(np.exp(tab), axis=2)[ar[:, None], xs]  # [trials, E, Y]
            u = rng.random((trials, E)) * cdf[..., -1]
            ys = np.minimum((cdf <= u[..., None]).sum(-1), Y - 1)
            lp = tab[ar[:, None], xs, ys]
        r = log_pb[xs, ys]
        J[:, c] = np.mean(r - beta * (lp - r), axis=1)
    return np.argmax(J, axis=1)


# ------------------------------------------------------------------------------------------- PyTorch XPO
def _torch_xpo(torch, gen, log_pb, mu, cls_lp, T, beta, alpha, E, cands, trials):
    """:func:`_np_xpo` in PyTorch, line for line (the same rounds vectorised across trials, a loop over T)."""
    X, K, Y = cls_lp.shape
    dev, dt = cls_lp.device, cls_lp.dtype
    cdf_b = torch.cumsum(torch.exp(log_pb), 1)
    S = torch.zeros((trials, X, K), dtype=dt, device=dev)
    idx = torch.zeros((trials, X), dtype=torch.long, device=dev)
    hist = torch.zeros((T, trials, X), dtype=torch.long, device=dev)
    ar = torch.arange(trials, device=dev)

    def draw(cdf):  # one inverse-CDF draw per row of a [..., Y] cdf
        u = torch.rand(cdf.shape[:-1], generator=gen, dtype=dt, device=dev) * cdf[..., -1]
        return torch.searchsorted(cdf, u[..., None], right=True)[..., 0].clamp_(max=Y - 1)

    def prompts(shape):
        return torch.multinomial(mu, int(np.prod(shape)), replacement=True, generator=gen).reshape(shape)

    for t in range(T):
        x = prompts((trials,))
        y = draw(cdf_b[x]) if t == 0 else draw(torch.cumsum(torch.exp(cls_lp[x, idx[ar, x]]), 1))
        yt = draw(cdf_b[x])
        ry, ryt = log_pb[x, y], log_pb[x, yt]
        lpy, lpt = cls_lp[x, :, y], cls_lp[x, :, yt]
        res = beta * (lpy - ry[:, None]) - beta * (lpt - ryt[:, None]) - (ry - ryt)[:, None]
        S[ar, x] += torch.where(torch.isfinite(res), alpha * lpt + res**2, torch.inf)
        Sx = S[ar, x]
        idx[ar, x] = torch.where(torch.isnan(Sx), torch.inf, Sx).argmin(1)
        hist[t] = idx
    J = torch.zeros((trials, len(cands)), dtype=dt, device=dev)
    for c, it in enumerate(cands):
        xs = prompts((trials, E))
        if it == 0:
            ys = draw(cdf_b[xs])
            lp = log_pb[xs, ys]
        else:
            tab = cls_lp[torch.arange(X, device=dev)[None, :], hist[it - 1]]  # [trials, X, Y]
            rows = tab[ar[:, None], xs]  # [trials, E, Y]
            ys = draw(torch.cumsum(torch.exp(rows), 2))
            lp = torch.gather(rows, 2, ys[..., None])[..., 0]
        r = log_pb[xs, ys]
        J[:, c] = torch.mean(r - beta * (lp - r), 1)
    return J.argmax(1)


def run(quick: bool = True) -> list[dict]:
    rows = []
    d, M = (16, 16) if quick else (64, 64)
    inst = instances.hard_instance(jax.random.key(0), d=d, M=M, Delta=0.5)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    base = FiniteClass.from_instance(inst)
    log_pb = np.asarray(inst.pi_base.log_probs, np.float64)
    mu = np.asarray(inst.mu, np.float64)
    mu = mu / mu.sum()
    reps = 2 if quick else 3

    sft_shapes = [(100, 100)] if quick else [(1000, 100), (1000, 1000)]
    torch = torch_or_none()
    for n, N in sft_shapes:
        trials = TRIALS  # every side times all of them (no slices: a rate per trial from a few is noisy)
        # at most ~2^24 draws in memory at once: JAX maps over batches of trials, PyTorch loops over chunks
        chunk = max(1, min(trials, (1 << 24) // (n * N)))
        cls = base.bon_closure(N)
        cfg = SFTConfig(n=n, N=N)
        one = lambda k: sft_sharpening(k, oracle, cls, cfg).params  # noqa: E731
        f = jax.jit(jax.vmap(one) if chunk >= trials else lambda ks: jax.lax.map(one, ks, batch_size=chunk))
        keys = jax.random.split(jax.random.key(1), trials)
        compile_s, jt = time_jax(f, keys, reps=reps)
        cls_lp = np.asarray(cls.log_probs, np.float64)
        rng = np.random.default_rng(0)
        nt = time_numpy(lambda: [_np_sft_trial(rng, log_pb, mu, cls_lp, n, N) for _ in range(trials)], reps=reps)
        peers = {"numpy": trials / nt}
        agree = None
        if torch is not None:
            gen = torch.Generator().manual_seed(0)
            t_args = (torch.as_tensor(log_pb, dtype=torch.float32), torch.as_tensor(mu, dtype=torch.float32),
                      torch.as_tensor(cls_lp, dtype=torch.float32))
            t_chunk = min(chunk, 256)  # memory: [chunk, n, N, ...] at once

            def t_all():
                return torch.cat([_torch_sft_trials(torch, gen, *t_args, n, N, min(t_chunk, trials - i))
                                  for i in range(0, trials, t_chunk)])

            peers["torch"] = trials / time_torch(t_all, reps=reps)
            # same computation: the chosen member per prompt has the same distribution (mean within 6 s.e.)
            agree = moments_agree(np.asarray(f(keys)), t_all().numpy())
        rows.append(_row("sft_sharpening", dict(d=d, M=M, n=n, N=N, queries_per_trial=n * N, trials=trials),
                         compile_s, trials / jt, peers, agree))

    T = 100 if quick else 1000
    trials = TRIALS
    beta = 0.5
    cfg = XPOConfig(T=T, beta=beta, alpha=0.05 * beta, eval_samples=64, eval_stride=max(T // 10, 1))
    cls = base
    f = jax.jit(jax.vmap(lambda k: xpo_sharpening(k, oracle, cls, cfg).params))
    keys = jax.random.split(jax.random.key(2), trials)
    compile_s, jt = time_jax(f, keys, reps=reps)
    cls_lp = np.asarray(cls.log_probs, np.float64)
    rng = np.random.default_rng(0)
    nt = time_numpy(lambda: _np_xpo(rng, log_pb, mu, cls_lp, T, beta, cfg.alpha, cfg.eval_samples,
                                    cfg.candidate_rounds, trials), reps=reps)
    peers, agree = {"numpy": trials / nt}, None
    if torch is not None:
        gen = torch.Generator().manual_seed(0)
        t_args = (torch.as_tensor(log_pb, dtype=torch.float32), torch.as_tensor(mu, dtype=torch.float32),
                  torch.as_tensor(cls_lp, dtype=torch.float32), T, beta, cfg.alpha, cfg.eval_samples,
                  cfg.candidate_rounds, trials)
        peers["torch"] = trials / time_torch(lambda: _torch_xpo(torch, gen, *t_args), reps=reps)
        # same computation: the selected candidate round has the same distribution over trials
        sel_np = _np_xpo(rng, log_pb, mu, cls_lp, T, beta, cfg.alpha, cfg.eval_samples, cfg.candidate_rounds, trials)
        agree = moments_agree(sel_np, _torch_xpo(torch, gen, *t_args).numpy())
    rows.append(_row("xpo_sharpening", dict(d=d, M=M, T=T, queries_per_trial=cfg.num_queries, trials=trials),
                     compile_s, trials / jt, peers, agree))
    return rows


def _row(name, shapes, compile_s, jax_tps, peers, agree):
    row = dict(
        benchmark=name, algorithm=name, shape=" ".join(f"{k}={v}" for k, v in shapes.items()), unit="trials",
        dtype=str(jnp.result_type(float)), **shapes, compile_s=round(compile_s, 3), agree=agree, **environment(),
    )
    return with_peers(row, jax_tps, peers)


if __name__ == "__main__":  # pragma: no cover
    import sys

    for r in run(quick="--full" not in sys.argv):
        print(r)
