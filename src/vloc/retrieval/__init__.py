"""Image retrieval: global descriptors from local ones (BoW tf-idf, VLAD) with a
vocabulary trained on the map's own images, global descriptors from the image (ALIKED
dense maps pooled by GeM or NetVLAD, optional whitening and head trained on the map;
DenseVLAD: dense RootSIFT aggregated by VLAD), and an exact cosine index over them."""
from __future__ import annotations

from .global_descriptors import (GLOBAL_DESCRIPTORS, IMAGE_GLOBAL_DESCRIPTORS, BagOfWords, BagOfWordsConfig,
                                 GlobalDescriptor, Vlad, VladConfig, intra_normalize, load_global, make_global,
                                 normalize_vlad)
from .densevlad import DenseVlad, DenseVladConfig, make_densevlad
from .image_global import DenseGlobal, DenseGlobalConfig
from .index import RetrievalIndex
from .vocabulary import train_vocabulary

__all__ = ["GLOBAL_DESCRIPTORS", "IMAGE_GLOBAL_DESCRIPTORS", "BagOfWords", "BagOfWordsConfig", "DenseGlobal",
           "DenseGlobalConfig", "DenseVlad", "DenseVladConfig", "GlobalDescriptor", "RetrievalIndex", "Vlad",
           "VladConfig", "intra_normalize", "load_global", "make_densevlad", "make_global", "normalize_vlad",
           "train_vocabulary"]
