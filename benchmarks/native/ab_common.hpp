// What the in-process A/B tools (ab_gemm, ab_train, ab_plan) share: loading each build into a
// namespace of its own (dlmopen), looking up its symbols, reporting a failed call, medians.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace ab {

// The build at path, loaded into a link-map namespace of its own (dlmopen), so that several
// builds of libkiln live side by side in one process; exits with status 2 naming the tool when it
// cannot be loaded.
inline void* open(const char* tool, const char* path) {
    void* h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        std::fprintf(stderr, "%s: %s\n", tool, dlerror());
        std::exit(2);
    }
    return h;
}

// The symbol `name` of the build at handle h, as type F; exits with status 2 naming the tool when
// the build lacks it.
template <class F>
F symbol(const char* tool, void* h, const char* name) {
    void* p = dlsym(h, name);
    if (p == nullptr) {
        std::fprintf(stderr, "%s: %s: %s\n", tool, name, dlerror());
        std::exit(2);
    }
    return reinterpret_cast<F>(p);
}

// Exits with status 1, naming the tool, the build and the failed call, unless st is 0 (KILN_OK);
// error is the build's kiln_last_error text.
inline void check(const char* tool, int st, const char* build, const char* what, const char* error) {
    if (st != 0) {
        std::fprintf(stderr, "%s: %s: %s failed: %s\n", tool, build, what, error);
        std::exit(1);
    }
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace ab
