// A minimal test framework for the C++ tests (no external dependency).
//
//   TEST(name) { CHECK(x == 1); CHECK_CLOSE(a, b, 1e-12); CHECK_THROWS_WITH(f(), "text"); }
//   int main() { return check::run_all(); }
//
// A failed check prints file:line and the expression and marks the test failed; the test goes
// on. An exception escaping a test fails it. run_all returns 1 if any test failed.
#pragma once

#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace check {

struct TestCase {
  const char* name;
  void (*function)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

inline int& failed_checks() {
  static int count = 0;
  return count;
}

struct Registration {
  Registration(const char* name, void (*function)()) { registry().push_back({name, function}); }
};

inline void report_failure(const char* file, int line, const std::string& what) {
  ++failed_checks();
  std::printf("  FAILED %s:%d: %s\n", file, line, what.c_str());
}

// |actual - expected| <= tolerance * max(1, |expected|)
inline bool close(double actual, double expected, double tolerance) {
  return std::fabs(actual - expected) <= tolerance * std::fmax(1.0, std::fabs(expected));
}

inline int run_all() {
  int failed_tests = 0;
  for (const TestCase& test : registry()) {
    const int before = failed_checks();
    try {
      test.function();
    } catch (const std::exception& error) {
      report_failure(test.name, 0, std::string("unexpected exception: ") + error.what());
    }
    const bool passed = failed_checks() == before;
    std::printf("[%s] %s\n", passed ? "  OK  " : "FAILED", test.name);
    if (!passed) ++failed_tests;
  }
  std::printf("%d tests, %d failed\n", static_cast<int>(registry().size()), failed_tests);
  return failed_tests == 0 ? 0 : 1;
}

}  // namespace check

#define TEST(name)                                                  \
  static void name();                                               \
  static const check::Registration name##_registration(#name, name); \
  static void name()

#define CHECK(condition)                                                     \
  do {                                                                       \
    if (!(condition)) check::report_failure(__FILE__, __LINE__, #condition); \
  } while (0)

#define CHECK_CLOSE(actual, expected, tolerance)                                           \
  do {                                                                                     \
    const double check_actual_ = (actual), check_expected_ = (expected);                   \
    if (!check::close(check_actual_, check_expected_, (tolerance))) {                      \
      char check_buffer_[256];                                                             \
      std::snprintf(check_buffer_, sizeof check_buffer_, "%s = %.17g, expected %.17g (%s)", \
                    #actual, check_actual_, check_expected_, #expected);                  \
      check::report_failure(__FILE__, __LINE__, check_buffer_);                            \
    }                                                                                      \
  } while (0)

#define CHECK_THROWS_WITH(expression, substring)                                             \
  do {                                                                                       \
    bool check_threw_ = false;                                                               \
    try {                                                                                    \
      (void)(expression);                                                                    \
    } catch (const std::invalid_argument& check_error_) {                                    \
      check_threw_ = true;                                                                   \
      if (std::string(check_error_.what()).find(substring) == std::string::npos) {           \
        check::report_failure(__FILE__, __LINE__,                                            \
                              std::string("message \"") + check_error_.what() +              \
                                  "\" does not contain \"" + (substring) + "\"");            \
      }                                                                                      \
    }                                                                                        \
    if (!check_threw_) {                                                                     \
      check::report_failure(__FILE__, __LINE__,                                              \
                            std::string(#expression) + " did not throw invalid_argument");  \
    }                                                                                        \
  } while (0)
