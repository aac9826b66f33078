"""Base policies π(y|x): tabular tables and autoregressive models over Y = V^H."""

from sharpsim.policies._tabular import InverseCDFTable, TabularPolicy, cumulative_sum, inverse_cdf_sample

__all__ = ["TabularPolicy", "InverseCDFTable", "inverse_cdf_sample", "cumulative_sum"]

# --- autoregressive policies over Y = V^H
from sharpsim.policies._autoregressive import (
    AutoregressivePolicy,
    index_to_sequences,
    sequence_lengths,
    sequences_to_index,
)
from sharpsim.policies._linear_softmax import LinearSoftmaxPolicy, project_to_norm_ball
from sharpsim.policies._markov import MarkovPolicy
from sharpsim.policies._transformer import TransformerPolicy, init_transformer_params

__all__ += [
    "AutoregressivePolicy",
    "MarkovPolicy",
    "LinearSoftmaxPolicy",
    "TransformerPolicy",
    "init_transformer_params",
    "project_to_norm_ball",
    "sequence_lengths",
    "index_to_sequences",
    "sequences_to_index",
]
