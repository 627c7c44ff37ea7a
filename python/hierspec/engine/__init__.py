"""The lossless hierarchical decoding engine (see :mod:`hierspec.engine.decoder`)."""

from .decoder import GenerateOutput, GenerateStats, HierarchicalDecoder, LevelStats

__all__ = ["GenerateOutput", "GenerateStats", "HierarchicalDecoder", "LevelStats"]
