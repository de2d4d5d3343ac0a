"""Memory this process may use, and sizes in words: the floor every layer plans with.

The machine's available memory (``MemAvailable``, capped by a cgroup limit) and, when set,
the ``memory_limit`` setting (``MOVIEREC_MEMORY_LIMIT``) — a cap a user puts on what
movierec plans to use (a shared machine, a container without a cgroup limit). Ingest,
training and evaluation all ask :func:`available_bytes` before they start and refuse early,
with what would fit, rather than crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from movierec.errors import MovierecError

GB = 1024**3


class InsufficientMemoryError(MovierecError):
    """A command would need more memory than it may use: it stopped before starting."""


def fmt_bytes(n: float) -> str:
    """``1.5 GB`` / ``300 MB``."""
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / 1024**2:.0f} MB"


def parse_memory(text: str) -> int:
    """Bytes of a JVM-style size (``4g``, ``512m``, ``1024``)."""
    units = {"k": 1024, "m": 1024**2, "g": GB, "t": 1024**4}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def available_bytes(limit: str | None = None) -> int:
    """Memory this process may still use.

    MemAvailable, capped by a cgroup limit if any, and by ``limit`` (a size such as ``4g``,
    the ``memory_limit`` setting) minus what this process already holds.
    """
    avail = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except OSError:  # pragma: no cover - not Linux
        avail = 0
    if not avail:  # pragma: no cover - not Linux
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        avail = int(pages) * int(os.sysconf("SC_PAGE_SIZE")) if pages else 64 * GB
    for limit_file, used_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw != "max" and int(raw) < 1 << 60:
                used = int(Path(used_file).read_text().strip())
                avail = min(avail, int(raw) - used)
        except (OSError, ValueError):
            continue
    if limit:
        avail = min(avail, parse_memory(limit) - _rss_bytes())
    return max(avail, 0)


def _rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0
