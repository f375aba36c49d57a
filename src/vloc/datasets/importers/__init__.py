"""One module per dataset format; each calls `registry.register(name, detect, load)`.
The order below is the detection order (most specific first)."""
from . import (  # noqa: F401
    synthetic_format,
    kapture,
    colmap,
    nerf,
    strecha,
    middlebury,
    tum,
    seven_scenes,
    cambridge,
    nvm,
    images,        # a plain folder of images: only when no other format matches
)
