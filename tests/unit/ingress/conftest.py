"""The relay's tests build frames with the comparator tests' helpers (compare_frames.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "compare"))
