"""Shadow-model runs: who trains on what."""

from miakit.shadow.keep import balanced_keep

__all__ = ["balanced_keep"]
