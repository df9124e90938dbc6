"""Small statistics both the benchmark and the failover drill report with."""

import math
from collections.abc import Iterable
from fractions import Fraction


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) by the nearest-rank method: the smallest value with
    at least p % of the values at or below it, i.e. the ceil(p/100 * n)-th of the n values in
    order. Always one of the values (never interpolated), so a p99 is a latency someone really
    waited; NaN when there are none."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    # exact arithmetic: in floats 7 / 100 * 100 is 7.000000000000001, whose ceiling is 8
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]
