"""loopback serving one tool, as a process of its own: ``python serve_loopback.py PORT TOKEN``.

Used by ``bench.py`` for the spawn → first ``tools/call`` time and the idle memory.
It does what a host program does: ``import loopback``, register a tool, start the
server (``loopback.start`` is what ``ensure()`` calls on first use; it is used here
only because it takes a pinned token, so the client can poll without being told one).
Serves until stdin closes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loopback  # noqa: E402


@loopback.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    server = loopback.start(int(sys.argv[1]), token=sys.argv[2])
    sys.stdin.read()
    server.close()
