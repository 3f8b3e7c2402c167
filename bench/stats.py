"""Small statistics the benchmarks share."""

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], rank: int) -> float:
    """The nearest-rank percentile: the smallest sample that at least `rank`% of the samples do not exceed."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]
