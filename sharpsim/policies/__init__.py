"""Base policies π(y|x): tabular tables and autoregressive models over Y = V^H."""

from sharpsim.policies._tabular import TabularPolicy, inverse_cdf_sample

__all__ = ["TabularPolicy", "inverse_cdf_sample"]
