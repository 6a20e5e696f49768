"""Figures of the trend-review notebook."""

from __future__ import annotations

__all__: list[str] = []
