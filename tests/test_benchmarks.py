"""The benchmark peers compute what the JAX rows compute (a ratio between different computations means nothing)."""

import numpy as np
import pytest

from sharpsim import TabularPolicy, bon_policy
from sharpsim.benchmarks._timing import moments_agree, with_peers
from sharpsim.benchmarks.tabular import numpy_bon_law, torch_bon_law, torch_sample_prepared

torch = pytest.importorskip("torch")


def test_bon_law_peers_equal_the_exact_law_with_ties_and_zeros():
    """Catches a peer that computes another law (ties not split, zeros given mass): all three agree to 1e-6."""
    P = np.array([[0.3, 0.3, 0.1, 0.1, 0.1, 0.1], [0.5, 0.25, 0.25, 0.0, 0.0, 0.0], [0.4, 0.25, 0.2, 0.1, 0.05, 0.0]])
    for N in (1, 3, 50):
        jax_law = np.asarray(bon_policy(TabularPolicy.from_probs(P.astype(np.float32)), N).probs, np.float64)
        np.testing.assert_allclose(numpy_bon_law(P, N), jax_law, atol=1e-6)
        np.testing.assert_allclose(torch_bon_law(torch, torch.as_tensor(P), N).numpy(), jax_law, atol=1e-6)


def test_torch_sampler_draws_from_the_table():
    """Catches an off-by-one in the inverse CDF (right=False shifts mass to the next response): frequencies of
    2e5 draws per row within 6 binomial standard errors of the table (false-failure rate < 1e-7)."""
    P = torch.tensor([[0.7, 0.0, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]])
    gen = torch.Generator().manual_seed(0)
    idx, lp = torch_sample_prepared(torch, gen, torch.cumsum(P, 1), torch.log(P), 200_000)
    for x in range(2):
        freq = np.bincount(idx[x].numpy(), minlength=4) / 200_000
        p = P[x].numpy()
        assert np.all(np.abs(freq - p) <= 6 * np.sqrt(p * (1 - p) / 200_000) + 1e-12), (freq, p)
    assert np.allclose(lp.numpy(), np.log(P.numpy())[np.arange(2)[:, None], idx.numpy()])


def test_ratio_is_to_the_faster_peer_and_moments_check_can_fail():
    row = with_peers({}, 10.0, {"numpy": 4.0, "torch": 5.0, "torch_cuda": None})
    assert row["peer"] == "torch" and row["ratio"] == 2.0 and "torch_cuda_per_s" not in row
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 10_000), rng.normal(0, 1, 10_000)
    assert moments_agree(a, b) and not moments_agree(a, b + 0.5)


def test_torch_reference_transformer_matches_jax():
    """Catches a PyTorch peer that samples another model (a layer norm, the KV cache or the prompt embedding
    wrong): the log-probs it reports for its own samples equal JAX teacher forcing of them."""
    import jax
    import jax.numpy as jnp

    from sharpsim.benchmarks.autoregressive import torch_transformer_sample
    from sharpsim.policies._transformer import TransformerPolicy

    pol = TransformerPolicy.init(jax.random.key(0), num_prompts=3, vocab_size=7, horizon=5, d_model=16, num_heads=2,
                                 num_layers=2)
    gen = torch.Generator().manual_seed(0)
    ys, lps = torch_transformer_sample(torch, pol.params, num_heads=2, x=1, num=32, gen=gen)
    np.testing.assert_allclose(lps.numpy(), pol.log_prob(1, jnp.asarray(ys.numpy())), rtol=1e-4, atol=1e-4)
