"""Shared helpers for the comparator tests (frames come from compare_frames.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
