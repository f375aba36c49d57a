"""Imports with a required order: cv2 must be imported before pycolmap, else
cv2's PNG writer aborts the process (pycolmap exports its own zlib symbols)."""
import cv2  # noqa: F401  (must come first)
import pycolmap  # noqa: E402

pycolmap.logging.minloglevel = 2  # warnings and errors only

__all__ = ["cv2", "pycolmap"]
