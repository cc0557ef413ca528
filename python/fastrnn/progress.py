"""The progress bar of the long ``fastrnn`` commands (train-charlm, bench)."""

from __future__ import annotations

import sys


class Progress:
    """A one-line progress bar on a terminal; on a pipe, a line every ~5% of the work."""

    def __init__(self, total: int, out=None):
        self.total, self.out = max(total, 1), out or sys.stderr
        self.tty = self.out.isatty()
        self.last_pct = -1

    def update(self, done: int, text: str) -> None:
        frac = min(done / self.total, 1.0)
        pct = int(frac * 100)
        if self.tty:
            filled = int(frac * 30)
            self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {text}   ")
            self.out.flush()
        elif pct // 5 != self.last_pct // 5 or done == self.total:
            self.out.write(f"{done}/{self.total} {text}\n")
            self.out.flush()
        self.last_pct = pct

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
