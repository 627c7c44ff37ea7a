"""hierspec: hierarchical speculative decoding.

A chain of draft models of increasing size, each verifying the drafts of the one below, the
target last; the output has exactly the target's distribution. The decoding policy is the
contract in ``docs/policy.md``.
"""

from hierspec.planning import (
    Evaluation,
    Plan,
    PlanEntry,
    Profile,
    SimulationResult,
    brute_force_plan,
    evaluate,
    expected_latency,
    load_profile,
    plan,
    simulate,
)
from hierspec.verify import VerifyResult, verify, verify_logits
from hierspec.protocol import DraftModel

__version__ = "0.1.0"

__all__ = [
    "DraftModel",
    "Evaluation",
    "Plan",
    "PlanEntry",
    "Profile",
    "SimulationResult",
    "VerifyResult",
    "__version__",
    "brute_force_plan",
    "evaluate",
    "expected_latency",
    "load_profile",
    "plan",
    "simulate",
    "verify",
    "verify_logits",
]
