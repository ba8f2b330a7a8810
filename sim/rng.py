"""Named, seeded random streams: one numpy Generator per (run seed, stream name).

The same (seed, name) gives the same stream on any machine; streams never share state, so
adding a new stream does not shift existing ones (common random numbers across variants).
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """Generator for stream `name` of run `seed` (PCG64 seeded by SeedSequence)."""
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, key])))
