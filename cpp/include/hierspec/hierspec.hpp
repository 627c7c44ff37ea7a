// hierspec C++ core: expected latency, simulation and planning of hierarchical speculative
// decoding under the policy of docs/policy.md.
#pragma once

#include "hierspec/cancel.hpp"
#include "hierspec/inputs.hpp"
#include "hierspec/latency.hpp"
#include "hierspec/planner.hpp"
#include "hierspec/simulate.hpp"
