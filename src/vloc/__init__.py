"""vloc: the 6-DoF pose of a camera from one image, against a map of a known scene."""
from .api import build_map, evaluate, load_localizer
from .datasets import Frame, Scene
from .errors import DataError, MapError, VlocError
from .geometry import Camera, Pose
from .localizers import Estimate, Prior, Query

__version__ = "0.1.0"

__all__ = ["build_map", "evaluate", "load_localizer", "Camera", "DataError", "Estimate", "Frame", "MapError", "Pose", "Prior", "Query",
           "Scene", "VlocError", "__version__"]
