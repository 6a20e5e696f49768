"""Seaborn/matplotlib figures. Functions draw frames computed elsewhere; they never compute.

One module per analysis; everything public is re-exported here, so notebooks and views
call ``plotting.plot_x``. Axes-level functions take ``ax=None`` (falling back to the
current axes), keyword-only options, and return the Axes.
"""

from __future__ import annotations

from ._base import set_theme
from .forecasting import *  # noqa: F403
from .forecasting import __all__ as _forecasting
from .lead_yield import *  # noqa: F403
from .lead_yield import __all__ as _lead_yield
from .product_potential import *  # noqa: F403
from .product_potential import __all__ as _product_potential
from .quality import *  # noqa: F403
from .quality import __all__ as _quality
from .trend_review import *  # noqa: F403
from .trend_review import __all__ as _trend_review

__all__ = [
    "set_theme",
    *_quality,
    *_product_potential,
    *_lead_yield,
    *_forecasting,
    *_trend_review,
]
