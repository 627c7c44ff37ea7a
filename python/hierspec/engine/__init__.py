"""The lossless hierarchical decoding engine.

Modules
-------
decoder
    :class:`HierarchicalDecoder` and the recursion of ``docs/policy.md``.
cache
    The cache owner: the sole writer of the working texts and the only truncation of caches.
errors
    :class:`NonDistributionError`: a verifying level's rows are not distributions.
stats
    :class:`GenerateOutput`, :class:`GenerateStats`, :class:`LevelStats` and their counters.
"""

from .decoder import HierarchicalDecoder
from .errors import NonDistributionError
from .stats import GenerateOutput, GenerateStats, LevelStats

__all__ = [
    "GenerateOutput",
    "GenerateStats",
    "HierarchicalDecoder",
    "LevelStats",
    "NonDistributionError",
]
