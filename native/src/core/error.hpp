// Error helpers: every fallible ABI call returns a kiln_status and leaves a thread-local message.
#pragma once

#include "kiln/kiln.h"

namespace kiln {

// Records a printf-style message for the calling thread and returns `status` so a check reads
//   if (n < 0) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_alloc: bytes is %lld: must be >= 0", n);
kiln_status fail(kiln_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Clears the calling thread's message (done on entry by calls that succeed).
void clear_error();

}  // namespace kiln
