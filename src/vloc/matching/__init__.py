"""Descriptor matching: mutual nearest neighbours, ratio test, FAISS indexes, geometric checks."""
from .nn import match_mutual_ratio

__all__ = ["match_mutual_ratio"]
