"""The localization service: `vloc serve MAP` answers HTTP requests (server.py)."""
from .server import make_server, serve

__all__ = ["make_server", "serve"]
