#pragma once
// rechub::Error and the check macros every op uses to reject bad input with a useful message.
#include <sstream>
#include <stdexcept>
#include <string>

namespace rechub {

// The one exception type of the library: a message a user can act on (what was wrong, where).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] void throw_error(const std::string& msg);
}  // namespace detail

}  // namespace rechub

// RECHUB_CHECK(cond, "matmul: inner dimensions differ: " << k1 << " vs " << k2);
#define RECHUB_CHECK(cond, msg)                                    \
  do {                                                             \
    if (!(cond)) {                                                 \
      std::ostringstream rechub_check_os_;                         \
      rechub_check_os_ << msg;                                     \
      ::rechub::detail::throw_error(rechub_check_os_.str());       \
    }                                                              \
  } while (0)

#define RECHUB_FAIL(msg)                                           \
  do {                                                             \
    std::ostringstream rechub_check_os_;                           \
    rechub_check_os_ << msg;                                       \
    ::rechub::detail::throw_error(rechub_check_os_.str());         \
  } while (0)
