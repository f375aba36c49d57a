"""One module per localization family, all behind `Localizer.localize(query) -> Estimate`."""
from .base import Estimate, Localizer, Prior, Query

__all__ = ["Estimate", "Localizer", "Prior", "Query"]
