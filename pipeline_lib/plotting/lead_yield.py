"""Figures of the lead-generation yield notebook."""

from __future__ import annotations

__all__: list[str] = []
