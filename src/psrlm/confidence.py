"""Mean and 95 % confidence interval over seeds: what report, sweep and frontier put beside a mean."""

from __future__ import annotations

import math
import statistics

# two-sided 95 % Student-t quantiles by degrees of freedom (no scipy dependency for three numbers)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (nan with fewer than two values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    t = _T95.get(len(values) - 1, 1.96)
    return statistics.mean(values), t * statistics.stdev(values) / math.sqrt(len(values))
