"""sharpsim: a theory-first simulation toolkit for the sharpening mechanism of LM self-improvement.

Huang, Block, Foster, Rohatgi, Zhang, Simchowitz, Ash, Krishnamurthy, "Self-Improvement in Language
Models: The Sharpening Mechanism", ICLR 2025 (arXiv:2412.01951). Equation and theorem numbers in the
docstrings refer to the arXiv version.
"""

__version__ = "0.1.0"

# --- foundation -------------------------------------------------------------------------------------
from sharpsim.policies import TabularPolicy

# --- autoregressive policies (issue: Autoregressive policies) ----------------------------------------

# --- algorithms and classes (issue: Sharpening algorithms) -------------------------------------------
