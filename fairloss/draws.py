"""Counter-based draws: each a function of (seed, stream, replicate, index) alone.

Item ``i`` of the dataset (its global index) gets, in replicate ``r`` of stream ``s``, a 32-bit
hash ``u[r, i]`` of its index and a per-replicate key. The key comes from the whole 64-bit seed
through splitmix64 (Steele, Lea & Flood 2014), so every bit of the seed changes every key, and
two seeds share a replicate's key with probability 2**-32, all R of them with 2**-32R. The
item's hash is murmur3's 32-bit finaliser of its index mixed with the key. Since a draw depends
on nothing else, any split of a dataset into requests, on any replica, draws the same values,
and the sums they weigh add up across chunks exactly.

Streams: ``poisson`` (bootstrap weights, Poisson(1) by the inverse CDF), ``flip`` (the paired
randomization test's swaps, probability 1/2) and ``relabel`` (uniforms in (0, 1) that relabel
items for the slice-versus-rest randomization test).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

Stream = Literal["poisson", "flip", "relabel"]
_STREAMS = {"poisson": 0, "flip": 0x6A09E667F3BCC909, "relabel": 0xBB67AE8584CAA73B}
Floats = npt.NDArray[np.float64]
Hashes = npt.NDArray[np.uint32]


def _thresholds() -> Hashes:
    """``T[k] = floor(2**32 * P(X <= k))`` for X ~ Poisson(1), while below 2**32 - 1 (a weight
    is the number of edges its uniform 32-bit hash reaches, 12 at most)."""
    edges: list[int] = []
    cdf, k = 0.0, 0
    while True:
        cdf += math.exp(-1) / math.factorial(k)
        edge = math.floor(cdf * 2**32)
        if edge >= 2**32 - 1:  # reached by the largest hash alone: no edge of its own
            return np.array(edges, dtype=np.uint32)
        edges.append(edge)
        k += 1


THRESHOLDS = _thresholds()


def _fmix32(h: Hashes) -> Hashes:
    """murmur3's 32-bit finaliser: every input bit changes each output bit with probability ~1/2."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's output function of ``x + golden gamma``: a bijection of 64-bit words."""
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64, as intended
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def replicate_keys(seed: int, replicates: int, stream: Stream) -> Hashes:
    """(R,) 32-bit keys of a seed's replicates in one stream, from all 64 bits of the seed."""
    base = _splitmix64(np.array([seed ^ _STREAMS[stream]], dtype=np.uint64))
    with np.errstate(over="ignore"):
        mixed = _splitmix64(base + np.arange(replicates, dtype=np.uint64) * np.uint64(2**32 + 1))
    return (mixed ^ (mixed >> np.uint64(32))).astype(np.uint32)


def hashes(seed: int, replicates: int, stream: Stream, start: int, count: int) -> Hashes:
    """(R, count) uniform 32-bit hashes of the items ``start .. start + count - 1``."""
    index = np.arange(start, start + count, dtype=np.uint64)
    low = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    high = _fmix32((index >> np.uint64(32)).astype(np.uint32) + np.uint32(0x68E31DA4))
    keys = replicate_keys(seed, replicates, stream)[:, None]
    return _fmix32((low * np.uint32(0x9E3779B1)) ^ high ^ keys)


def poisson_weights(seed: int, replicates: int, start: int, count: int) -> Floats:
    """(R, count) Poisson(1) weights: the number of `THRESHOLDS` each hash reaches."""
    u = hashes(seed, replicates, "poisson", start, count)
    counts = np.zeros(u.shape, dtype=np.uint8)
    for edge in THRESHOLDS:
        np.add(counts, u >= edge, out=counts, casting="unsafe")
    return counts.astype(np.float64)


def flip_signs(seed: int, replicates: int, start: int, count: int) -> Floats:
    """(R, count) signs, -1 (swap the two candidates' outputs) or +1, each with probability 1/2:
    the top bit of each hash."""
    u = hashes(seed, replicates, "flip", start, count)
    return 1.0 - 2.0 * (u >> np.uint32(31)).astype(np.float64)


def uniforms(seed: int, replicates: int, start: int, count: int) -> Floats:
    """(R, count) uniforms in (0, 1): ``(u + 1/2) / 2**32``."""
    u = hashes(seed, replicates, "relabel", start, count).astype(np.float64)
    return (u + 0.5) / 2.0**32
