"""Image retrieval: global descriptors from local ones (BoW tf-idf, VLAD) with a
vocabulary trained on the map's own images, and an exact cosine index over them."""
from __future__ import annotations

from .global_descriptors import (GLOBAL_DESCRIPTORS, BagOfWords, BagOfWordsConfig, GlobalDescriptor, Vlad,
                                 VladConfig, intra_normalize, load_global, make_global, normalize_vlad)
from .index import RetrievalIndex
from .vocabulary import train_vocabulary

__all__ = ["GLOBAL_DESCRIPTORS", "BagOfWords", "BagOfWordsConfig", "GlobalDescriptor", "RetrievalIndex",
           "Vlad", "VladConfig", "intra_normalize", "load_global", "make_global", "normalize_vlad",
           "train_vocabulary"]
