"""Sharpening algorithms: inference-time best-of-N and the amortised SFT / RLHF / XPO sharpening."""

from sharpsim.algorithms._best_of_n import BestOfN, best_of_n, select_best

__all__ = ["BestOfN", "best_of_n", "select_best"]
