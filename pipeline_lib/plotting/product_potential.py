"""Figures of the product-potential notebook."""

from __future__ import annotations

__all__: list[str] = []
