// pybind11 glue for the hierspec C++ core: argument conversion and docstrings only.
// std::invalid_argument from the core surfaces as ValueError (pybind11's standard mapping).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "hierspec/hierspec.hpp"

namespace py = pybind11;
using hierspec::AcceptanceMatrix;
using hierspec::CostTable;
using ConstantCosts = std::vector<double>;
using Ints = std::vector<int>;

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
      .def_readonly("tokens_per_target_pass", &hierspec::Evaluation::tokens_per_target_pass);

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

  // Overloads: the table form first, then the constant-cost form.
  module.def("evaluate",
             py::overload_cast<const CostTable&, const AcceptanceMatrix&, const Ints&, const Ints&>(
                 &hierspec::evaluate),
             py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
             (std::string("Exact expectation of a chain under docs/policy.md.") + costs_doc)
                 .c_str());
  module.def("evaluate",
             py::overload_cast<const ConstantCosts&, const AcceptanceMatrix&, const Ints&,
                               const Ints&>(&hierspec::evaluate),
             py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"));

  module.def("simulate",
             py::overload_cast<const CostTable&, const AcceptanceMatrix&, const Ints&, const Ints&,
                               std::int64_t, std::uint64_t>(&hierspec::simulate),
             py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
             py::arg("num_tokens"), py::arg("seed"),
             (std::string("Seeded Monte Carlo of the same process.") + costs_doc).c_str(),
             py::call_guard<py::gil_scoped_release>());
  module.def("simulate",
             py::overload_cast<const ConstantCosts&, const AcceptanceMatrix&, const Ints&,
                               const Ints&, std::int64_t, std::uint64_t>(&hierspec::simulate),
             py::arg("costs"), py::arg("acceptance"), py::arg("chain"), py::arg("draft_lengths"),
             py::arg("num_tokens"), py::arg("seed"), py::call_guard<py::gil_scoped_release>());

  module.def("plan",
             py::overload_cast<const CostTable&, const AcceptanceMatrix&, int>(&hierspec::plan),
             py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
             (std::string("Latency-optimal chain and draft lengths (exact DP).") + costs_doc).c_str(),
             py::call_guard<py::gil_scoped_release>());
  module.def("plan",
             py::overload_cast<const ConstantCosts&, const AcceptanceMatrix&, int>(&hierspec::plan),
             py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
             py::call_guard<py::gil_scoped_release>());

  module.def("brute_force_plan",
             py::overload_cast<const CostTable&, const AcceptanceMatrix&, int>(
                 &hierspec::brute_force_plan),
             py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
             (std::string("The planner's result by exhaustive enumeration (for tests).") +
              costs_doc).c_str(),
             py::call_guard<py::gil_scoped_release>());
  module.def("brute_force_plan",
             py::overload_cast<const ConstantCosts&, const AcceptanceMatrix&, int>(
                 &hierspec::brute_force_plan),
             py::arg("costs"), py::arg("acceptance"), py::arg("max_draft_length"),
             py::call_guard<py::gil_scoped_release>());
}
