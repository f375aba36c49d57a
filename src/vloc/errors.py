"""Errors a user can cause. The CLI prints them as one line, never a traceback."""


class VlocError(Exception):
    """A user's mistake or bad input: missing file, unknown format, bad intrinsics..."""


class DataError(VlocError):
    """Input data (images, poses, dataset files) is missing or malformed."""


class MapError(VlocError):
    """A map directory is missing, empty, truncated or of another version."""
