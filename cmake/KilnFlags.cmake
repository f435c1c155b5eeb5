# Compiler flags shared by every Kiln native target.
#
# Each ISA variant of a kernel is its own translation unit with its own flags
# (kiln_isa_sources); the rest of the library is built for baseline x86-64 so that a CPU without
# AVX-512 never executes an AVX-512 instruction. Never -march=native.

set(KILN_WARNINGS -Wall -Wextra -Werror -Wno-unused-parameter)

set(KILN_FLAGS_AVX2 -mavx2 -mfma -mf16c)
# -Wno-maybe-uninitialized: GCC 12's own avx512fintrin.h trips it (_mm512_undefined_ps in max/min).
set(KILN_FLAGS_AVX512 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl
    -Wno-maybe-uninitialized)
set(KILN_FLAGS_AVX512_BF16 ${KILN_FLAGS_AVX512} -mavx512bf16 -mavx512vnni)

# kiln_isa_sources(ISA file...): compile files with that ISA's flags (ISA: AVX2, AVX512, AVX512_BF16).
function(kiln_isa_sources isa)
  set(flags ${KILN_FLAGS_${isa}})
  if(NOT flags)
    message(FATAL_ERROR "kiln_isa_sources: unknown ISA ${isa}")
  endif()
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${flags}")
endfunction()

option(KILN_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
if(KILN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# The thread pool, the per-thread scratch and the plans shared by serving threads, under
# ThreadSanitizer (the tsan preset). Not with KILN_SANITIZE: the two runtimes exclude each other.
option(KILN_SANITIZE_THREAD "Build with ThreadSanitizer" OFF)
if(KILN_SANITIZE_THREAD)
  if(KILN_SANITIZE)
    message(FATAL_ERROR "KILN_SANITIZE_THREAD and KILN_SANITIZE cannot be combined")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
