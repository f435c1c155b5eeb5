#include "error.hpp"

#include <cstdarg>
#include <cstdio>

namespace kiln {
namespace {
// Fixed-size so that recording an error never allocates (it may run when memory is short).
thread_local char g_message[1024] = {0};
}  // namespace

kiln_status fail(kiln_status status, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(g_message, sizeof g_message, fmt, args);
    va_end(args);
    return status;
}

void clear_error() { g_message[0] = '\0'; }

}  // namespace kiln

extern "C" KILN_API const char* kiln_last_error(void) { return kiln::g_message; }

extern "C" KILN_API const char* kiln_status_name(int32_t status) {
    switch (status) {
        case KILN_OK: return "KILN_OK";
        case KILN_ERR_INVALID_ARGUMENT: return "KILN_ERR_INVALID_ARGUMENT";
        case KILN_ERR_OUT_OF_MEMORY: return "KILN_ERR_OUT_OF_MEMORY";
        case KILN_ERR_UNSUPPORTED: return "KILN_ERR_UNSUPPORTED";
        case KILN_ERR_SHAPE_MISMATCH: return "KILN_ERR_SHAPE_MISMATCH";
        case KILN_ERR_DTYPE_MISMATCH: return "KILN_ERR_DTYPE_MISMATCH";
        case KILN_ERR_OVERFLOW: return "KILN_ERR_OVERFLOW";
        case KILN_ERR_INTERNAL: return "KILN_ERR_INTERNAL";
        default: return "KILN_ERR_UNKNOWN";
    }
}
