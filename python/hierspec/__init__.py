"""hierspec: hierarchical speculative decoding.

A chain of draft models of increasing size, each verifying the drafts of the one below, the
target last; the output has exactly the target's distribution. The decoding policy is the
contract in ``docs/policy.md``.
"""

from hierspec.adaptive import AdaptiveConfig, PlanDecision
from hierspec.engine import (
    GenerateOutput,
    GenerateStats,
    HierarchicalDecoder,
    LevelStats,
    NonDistributionError,
)
from hierspec.levels import TransformersLevel
from hierspec.packing import pack_for_cpu
from hierspec.planning import (
    Evaluation,
    Plan,
    PlanEntry,
    Profile,
    RequestPlan,
    SimulationResult,
    brute_force_plan,
    evaluate,
    expected_latency,
    load_profile,
    plan,
    plan_for_prompt,
    plan_request,
    prefill_costs,
    simulate,
)
from hierspec.profiler import profile
from hierspec.protocol import DraftModel
from hierspec.sampling import SamplingConfig
from hierspec.verify import VerifyResult, verify, verify_logits
from hierspec.vocab_subset import VocabSubsetLevel, frequent_tokens

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConfig",
    "DraftModel",
    "Evaluation",
    "GenerateOutput",
    "GenerateStats",
    "HierarchicalDecoder",
    "LevelStats",
    "NonDistributionError",
    "Plan",
    "PlanDecision",
    "PlanEntry",
    "Profile",
    "RequestPlan",
    "SamplingConfig",
    "SimulationResult",
    "TransformersLevel",
    "VerifyResult",
    "VocabSubsetLevel",
    "__version__",
    "brute_force_plan",
    "evaluate",
    "expected_latency",
    "frequent_tokens",
    "load_profile",
    "pack_for_cpu",
    "plan",
    "plan_for_prompt",
    "plan_request",
    "prefill_costs",
    "profile",
    "simulate",
    "verify",
    "verify_logits",
]
