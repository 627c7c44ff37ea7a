// pybind11 glue for the hierspec C++ core: argument conversion, docstrings and Ctrl-C.
// std::invalid_argument from the core surfaces as ValueError (pybind11's standard mapping).
// Long calls (plan, brute_force_plan, simulate) run without the GIL and poll Python's signal
// handlers through the core's StopRequested hook (hierspec/cancel.hpp), so Ctrl-C (or any
// signal handler that raises) interrupts them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "hierspec/hierspec.hpp"

namespace py = pybind11;
using hierspec::AcceptanceMatrix;
using hierspec::CostTable;
using ConstantCosts = std::vector<double>;
using Ints = std::vector<int>;

namespace {

using Rates = std::vector<double>;

hierspec::EarlyStopping early_stopping_of(const Rates& continue_rates,
                                          const AcceptanceMatrix& bottom_acceptance) {
  return {continue_rates, bottom_acceptance};
}

// At most every 50 ms, take the GIL and run Python's signal handlers; true when one raised
// (the Python error stays set on this thread for `interruptible` to re-raise).
hierspec::StopRequested python_signal_raised() {
  using Clock = std::chrono::steady_clock;
  auto last_check = std::make_shared<Clock::time_point>(Clock::now());
  return [last_check]() {
    const Clock::time_point now = Clock::now();
    if (now - *last_check < std::chrono::milliseconds(50)) return false;
    *last_check = now;
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
}

// Runs call(should_stop) without the GIL; a cancellation re-raises the Python exception that
// caused it (KeyboardInterrupt for Ctrl-C).
template <typename Call>
auto interruptible(Call call) {
  try {
    py::gil_scoped_release release;
    return call(python_signal_raised());
  } catch (const hierspec::Cancelled&) {
    if (PyErr_Occurred() != nullptr) throw py::error_already_set();
    throw;
  }
}

}  // namespace

PYBIND11_MODULE(_core, module) {
  module.doc() =
      "hierspec C++ core: exact expected latency, Monte Carlo simulation and the optimal "
      "planner for the decoding policy of docs/policy.md. Use the typed API in hierspec "
      "(hierspec.planning); this module is its glue.";

  py::class_<hierspec::Evaluation>(module, "Evaluation")
      .def_readonly("latency", &hierspec::Evaluation::latency)
      .def_readonly("passes_per_token", &hierspec::Evaluation::passes_per_token)
      .def_readonly("tokens_per_token", &hierspec::Evaluation::tokens_per_token)
      .def_readonly("cost_per_token", &hierspec::Evaluation::cost_per_token)
      .def_readonly("tokens_per_target_pass", &hierspec::Evaluation::tokens_per_target_pass)
      .def_readonly("bonus_state_probability", &hierspec::Evaluation::bonus_state_probability);

  py::class_<hierspec::SimulationResult>(module, "SimulationResult")
      .def_readonly("latency", &hierspec::SimulationResult::latency)
      .def_readonly("passes_per_token", &hierspec::SimulationResult::passes_per_token)
      .def_readonly("tokens_per_token", &hierspec::SimulationResult::tokens_per_token)
      .def_readonly("cost_per_token", &hierspec::SimulationResult::cost_per_token)
      .def_readonly("tokens_per_target_pass", &hierspec::SimulationResult::tokens_per_target_pass)
      .def_readonly("num_tokens", &hierspec::SimulationResult::num_tokens)
      .def_readonly("num_target_passes", &hierspec::SimulationResult::num_target_passes);

  py::class_<hierspec::PlanEntry>(module, "PlanEntry")
      .def_readonly("chain", &hierspec::PlanEntry::chain)
      .def_readonly("draft_lengths", &hierspec::PlanEntry::draft_lengths)
      .def_readonly("latency", &hierspec::PlanEntry::latency)
      .def_readonly("speedup", &hierspec::PlanEntry::speedup)
      .def_readonly("speedup_vs_single_draft", &hierspec::PlanEntry::speedup_vs_single_draft);

  py::class_<hierspec::PlanResult>(module, "PlanResult")
      .def_readonly("best", &hierspec::PlanResult::best)
      .def_readonly("target_latency", &hierspec::PlanResult::target_latency)
      .def_readonly("best_single_draft", &hierspec::PlanResult::best_single_draft)
      .def_readonly("alternatives", &hierspec::PlanResult::alternatives)
      .def_readonly("max_draft_length", &hierspec::PlanResult::max_draft_length)
      .def_readonly("cost_table_columns", &hierspec::PlanResult::cost_table_columns)
      .def_readonly("columns_needed", &hierspec::PlanResult::columns_needed)
      .def_readonly("limited_by_cost_table", &hierspec::PlanResult::limited_by_cost_table);

  const char* costs_doc =
      " costs: [M][N] table (cost of a pass over n = 1..N tokens) or [M] constant per pass;"
      " acceptance: [M][M].";
  const char* continue_doc =
      " continue_rates: [M] (or empty: 1 each), the bottom level's probability of drafting at"
      " each position rather than stopping its batch (policy rule 1); bottom_acceptance: [M][M]"
      " (or empty: acceptance), the acceptance of a model's drafts when it is the bottom level.";

  // Overloads: the table form first, then the constant-cost form.
  module.def(
      "evaluate",
      [](const CostTable& costs, const AcceptanceMatrix& acceptance, const Ints& chain,
         const Ints& draft_lengths, const Rates& continue_rates,
         const AcceptanceMatrix& bottom_acceptance) {
        return hierspec::evaluate(costs, acceptance, chain, draft_lengths,
                                  early_stopping_of(continue_rates, bottom_acceptance));
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
      py::arg("continue_rates") = Rates{}, py::arg("bottom_acceptance") = AcceptanceMatrix{},
      (std::string("Exact expectation of a chain under docs/policy.md.") + costs_doc +
       continue_doc)
          .c_str());
  module.def(
      "evaluate",
      [](const ConstantCosts& costs, const AcceptanceMatrix& acceptance, const Ints& chain,
         const Ints& draft_lengths, const Rates& continue_rates,
         const AcceptanceMatrix& bottom_acceptance) {
        return hierspec::evaluate(costs, acceptance, chain, draft_lengths,
                                  early_stopping_of(continue_rates, bottom_acceptance));
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
      py::arg("continue_rates") = Rates{}, py::arg("bottom_acceptance") = AcceptanceMatrix{});

  module.attr("MAX_DRAFT_LENGTH") = hierspec::kMaxDraftLength;
  module.attr("MAX_SIMULATED_TOKENS") = hierspec::kMaxSimulatedTokens;

  const char* interrupt_doc = " Interruptible: Ctrl-C raises KeyboardInterrupt within ~50 ms.";
  module.def(
      "simulate",
      [](const CostTable& costs, const AcceptanceMatrix& acceptance, const Ints& chain,
         const Ints& draft_lengths, std::int64_t num_tokens, std::uint64_t seed,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::simulate(costs, acceptance, chain, draft_lengths, num_tokens, seed,
                                    early_stopping, should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
      py::arg("num_tokens"), py::arg("seed"), py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{},
      (std::string("Seeded Monte Carlo of the same process.") + costs_doc + interrupt_doc)
          .c_str());
  module.def(
      "simulate",
      [](const ConstantCosts& costs, const AcceptanceMatrix& acceptance, const Ints& chain,
         const Ints& draft_lengths, std::int64_t num_tokens, std::uint64_t seed,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::simulate(costs, acceptance, chain, draft_lengths, num_tokens, seed,
                                    early_stopping, should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
      py::arg("num_tokens"), py::arg("seed"), py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{});

  module.def(
      "plan",
      [](const CostTable& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::plan(costs, acceptance, max_draft_length, early_stopping,
                                should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
      py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{},
      (std::string("Latency-optimal chain and draft lengths (exact DP, O(M^2 T^2)).") +
       costs_doc + interrupt_doc)
          .c_str());
  module.def(
      "plan",
      [](const ConstantCosts& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::plan(costs, acceptance, max_draft_length, early_stopping,
                                should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
      py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{});

  module.def(
      "brute_force_plan",
      [](const CostTable& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::brute_force_plan(costs, acceptance, max_draft_length, early_stopping,
                                should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
      py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{},
      (std::string("The planner's result by exhaustive enumeration (for tests).") + costs_doc +
       interrupt_doc)
          .c_str());
  module.def(
      "brute_force_plan",
      [](const ConstantCosts& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
         const Rates& continue_rates, const AcceptanceMatrix& bottom_acceptance) {
        const hierspec::EarlyStopping early_stopping =
            early_stopping_of(continue_rates, bottom_acceptance);
        return interruptible([&](const hierspec::StopRequested& should_stop) {
          return hierspec::brute_force_plan(costs, acceptance, max_draft_length, early_stopping,
                                should_stop);
        });
      },
      py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
      py::arg("continue_rates") = Rates{},
      py::arg("bottom_acceptance") = AcceptanceMatrix{});

  py::class_<hierspec::RatePosteriors>(
      module, "RatePosteriors",
      "Online posteriors of Bernoulli rates with discounting and change points "
      "(hierspec/rates.hpp; hierspec.adaptive.RatePosteriors is the typed API).")
      .def(py::init<std::vector<double>, std::vector<double>, double, double, int>(),
           py::arg("prior"), py::arg("strength"), py::arg("discount"),
           py::arg("change_rate") = 0.0, py::arg("max_runs") = 32)
      .def("observe", &hierspec::RatePosteriors::observe, py::arg("entry"),
           py::arg("successes"), py::arg("failures"),
           "Draws of rate `entry` (flat index): successes, then failures.")
      .def("means", &hierspec::RatePosteriors::means)
      .def("stds", &hierspec::RatePosteriors::stds)
      .def("evidence", &hierspec::RatePosteriors::evidence)
      .def_property_readonly("size", &hierspec::RatePosteriors::size)
      .def_property_readonly("runs", &hierspec::RatePosteriors::runs);
}
