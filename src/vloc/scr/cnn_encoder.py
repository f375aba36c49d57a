"""The CNN regressor's encoder: ALIKED's dense feature map averaged over cells, as
`retrieval.dense.dense_features` computes it, without the work it does not need.

kornia's `ALIKED.extract_dense_map` concatenates the four scales (the coarse ones
upsampled to full resolution), L2-normalises every pixel's 128 channels and also
computes the keypoint score map. Here the score head is skipped, each scale is
divided by the pixel's norm and averaged over the cells on its own (no
full-resolution concatenation, the norm from per-scale sums of squares), then the
cells are renormalised: the same features up to float rounding. Measured on a
320 x 240 image, one core: 178 ms for `dense_features`' network call, of which the
norm, the division, the concatenation and the score head took ~150 ms."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def dense_cells(image: np.ndarray, model: str = "aliked-n16", cell: int = 8) -> np.ndarray:
    """(h, w, C) float32 unit-L2 features of the image's `cell` x `cell` pixel cells
    (h = ceil(H / cell)): ALIKED's per-pixel L2-normalised dense map at the image's
    own size, averaged over the cells and renormalised."""
    from kornia.feature.aliked.aliked import InputPadder

    from ..retrieval.dense import aliked_network, as_rgb01
    net = aliked_network(model)
    x = as_rgb01(image)
    padder = InputPadder(x.shape[-2], x.shape[-1], 32)
    with torch.inference_mode():
        x1 = net.block1(padder.pad(x))
        x2 = net.block2(net.pool2(x1))
        x3 = net.block3(net.pool4(x2))
        x4 = net.block4(net.pool4(x3))
        parts = [net.gate(net.conv1(x1)), net.upsample2(net.gate(net.conv2(x2))),
                 net.upsample8(net.gate(net.conv3(x3))), net.upsample32(net.gate(net.conv4(x4)))]
        parts = [padder.unpad(p) for p in parts]
        norm = sum((p * p).sum(1, keepdim=True) for p in parts).sqrt_().clamp_min_(1e-12)
        pooled = torch.cat([F.avg_pool2d(p / norm, cell, cell, ceil_mode=True) for p in parts], 1)
        pooled = F.normalize(pooled, dim=1)
    return np.ascontiguousarray(pooled[0].permute(1, 2, 0).numpy(), dtype=np.float32)
