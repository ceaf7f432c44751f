#pragma once
// rechub::Error and the check macros every layer uses to reject bad input with a useful message.
// Defined here, in the lowest layer, so the kernels report errors without knowing anything above
// them; core/error.h re-exports it for core, nn and mtl.
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
// Out of line and cold, so each check site stays one call; inline (COMDAT) so that every layer,
// the CUDA backend's own library included, has it without linking another library.
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_error(const std::string& msg) { throw Error(msg); }
}  // namespace detail

}  // namespace rechub

// RECHUB_CHECK(cond, "matmul: inner dimensions differ: " << k1 << " vs " << k2);
#define RECHUB_CHECK(cond, msg)                              \
  do {                                                       \
    if (!(cond)) {                                           \
      std::ostringstream rechub_check_os_;                   \
      rechub_check_os_ << msg;                               \
      ::rechub::detail::throw_error(rechub_check_os_.str()); \
    }                                                        \
  } while (0)

#define RECHUB_FAIL(msg)                                   \
  do {                                                     \
    std::ostringstream rechub_check_os_;                   \
    rechub_check_os_ << msg;                               \
    ::rechub::detail::throw_error(rechub_check_os_.str()); \
  } while (0)
