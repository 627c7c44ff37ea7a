// hierspec C++ core: expected latency, simulation and planning of hierarchical speculative
// decoding under the policy of docs/policy.md, and the online rate posteriors that re-planning
// learns from.
#pragma once

#include "hierspec/cancel.hpp"
#include "hierspec/inputs.hpp"
#include "hierspec/latency.hpp"
#include "hierspec/planner.hpp"
#include "hierspec/rates.hpp"
#include "hierspec/simulate.hpp"
