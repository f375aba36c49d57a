"""Pose regression networks (no torchvision): a trunk (a compact ResNet trained from
scratch, or kornia's ALIKED dense map with packaged weights, frozen), global average
pooling, a fully connected layer with ReLU (F features) and a linear pose head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VlocError

TRUNKS = ("resnet", "aliked")
ALIKED_CHANNELS = 128


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """Stem (3x3, stride 2) and 4 stages of one basic block each (strides 1, 2, 2, 2):
    total stride 16, widths w, w, 2w, 4w, 8w."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        widths = [width, width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.Sequential(*[BasicBlock(widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(4)])
        self.channels = widths[-1]
        # ImageNet-like input statistics: the input is RGB in [0, 1]
        self.register_buffer("rgb_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return self.stages(self.stem((images - self.rgb_mean) / self.rgb_std))


class AlikedTrunk(nn.Module):
    """kornia's ALIKED dense map (128 channels, unit L2 per pixel), frozen. The shared
    network is held outside the module tree, so it is in no state dict of ours and
    `train()` never touches it."""

    channels = ALIKED_CHANNELS

    def __init__(self, model: str = "aliked-n16"):
        super().__init__()
        from ..retrieval.dense import aliked_network
        self._net = [aliked_network(model)]       # a list: not registered as a submodule

    def forward(self, images):
        with torch.no_grad():
            fmap, _ = self._net[0].extract_dense_map(images)
        return fmap


class PoseRegressor(nn.Module):
    """images (B, 3, H, W) RGB in [0, 1] -> camera centres in world units and unit
    quaternions (w >= 0) of the `cam_from_world` rotation.

    The head's 7 outputs are a normalised position ([0:3]; world = position_mean +
    position_scale * out) and an unnormalised quaternion ([3:7])."""

    def __init__(self, trunk: str = "resnet", feature_dim: int = 256, width: int = 16,
                 aliked_model: str = "aliked-n16"):
        super().__init__()
        if trunk not in TRUNKS:
            raise VlocError(f"unknown trunk {trunk!r}; available: {', '.join(TRUNKS)}")
        self.trunk = ResNetTrunk(width) if trunk == "resnet" else AlikedTrunk(aliked_model)
        self.fc = nn.Linear(self.trunk.channels, feature_dim)
        self.head = nn.Linear(feature_dim, 7)
        self.register_buffer("position_mean", torch.zeros(3))
        self.register_buffer("position_scale", torch.tensor(1.0))
        with torch.no_grad():                      # start at the mean position, identity rotation
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.tensor([0, 0, 0, 1.0, 0, 0, 0]))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, F): the head's input (pooled trunk features after the FC layer and ReLU)."""
        return F.relu(self.fc(self.trunk(images).mean(dim=(2, 3))))

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 7): the head's output."""
        return self.head(self.features(images))

    def to_world(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs -> (centres (B, 3) in world units, unit quaternions (B, 4), w >= 0)."""
        centres = self.position_mean + self.position_scale * out[:, :3]
        return centres, canonical_quaternion(out[:, 3:7])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_world(self.raw(images))

    def set_position_normalisation(self, centres: torch.Tensor) -> None:
        """Mean and scale (RMS distance to the mean) of the training centres."""
        mean = centres.mean(0)
        scale = (centres - mean).norm(dim=1).pow(2).mean().sqrt().clamp_min(1e-6)
        self.position_mean.copy_(mean)
        self.position_scale.copy_(scale)


def canonical_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions with w >= 0 (q and -q are the same rotation)."""
    q = F.normalize(q, dim=-1, eps=1e-8)
    return torch.where(q[..., :1] < 0, -q, q)
