// Formatting of values for error messages (internal).
#pragma once

#include <string>
#include <vector>

namespace hierspec::detail {

/// Shortest decimal text that reads back as `value` ("1.5", "-2", "nan", "inf").
std::string format_number(double value);

/// "[2, 1, 3]".
std::string format_list(const std::vector<int>& values);

}  // namespace hierspec::detail
