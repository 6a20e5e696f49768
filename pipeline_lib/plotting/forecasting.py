"""Figures of the sales-forecast notebook."""

from __future__ import annotations

__all__: list[str] = []
