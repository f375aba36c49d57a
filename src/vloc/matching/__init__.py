"""Descriptor matching: mutual nearest neighbours, ratio test, FAISS indexes, geometric checks."""
from .nn import match_mutual_ratio, match_mutual_ratio_many

__all__ = ["match_mutual_ratio", "match_mutual_ratio_many"]
