"""The profiler: measures what the planner needs (pass costs and acceptance rates) about a set of
candidate models.

Modules:
    :mod:`~hierspec.profiler.measure`     :func:`profile`, the measurement (its docstring defines
                                          cost, acceptance and the profile's ``extra``);
    :mod:`~hierspec.profiler.timing`      the pass-timing loop (the profiler's and the benchmarks');
    :mod:`~hierspec.profiler.acceptance`  pairwise acceptance, overall and by draft position;
    :mod:`~hierspec.profiler.config`      :class:`ProfilerConfig` and the cost table width;
    :mod:`~hierspec.profiler.cache`       profiles cached per models, prompts and conditions.
"""

from hierspec.planning import nondecreasing_fit
from hierspec.profiler.cache import (
    cached_profile,
    model_identity,
    profile_cache_path,
    write_profile,
)
from hierspec.profiler.config import ProfilerConfig, columns_needed
from hierspec.profiler.measure import profile
from hierspec.profiler.timing import (
    COST_FITS,
    CostMeasurement,
    PassTiming,
    measure_pass_costs,
    time_pass,
)

__all__ = [
    "COST_FITS",
    "CostMeasurement",
    "PassTiming",
    "ProfilerConfig",
    "cached_profile",
    "columns_needed",
    "measure_pass_costs",
    "model_identity",
    "nondecreasing_fit",
    "profile",
    "profile_cache_path",
    "time_pass",
    "write_profile",
]
