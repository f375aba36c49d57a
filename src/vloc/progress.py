"""Progress bars on long work, shown only on a terminal (not in logs or pipes)."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable, desc: str, enabled: bool = True, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, leave=False,
                disable=not enabled or not sys.stderr.isatty())
