#pragma once
// rechub::Error and the check macros (RECHUB_CHECK, RECHUB_FAIL) every op uses to reject bad input
// with a useful message. They live in the lowest layer (kernels/error.h), so that kernels, which
// know nothing above them, throw the same type that core, nn and mtl throw and users catch.
#include "rechub/kernels/error.h"
