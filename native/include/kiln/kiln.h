/*
 * kiln.h — the one public header of Kiln's native core, and the only door into native code.
 *
 * Overview
 * --------
 * Kiln's native library is a flat C ABI: opaque values, plain C types, and a `kiln_status` returned
 * by every fallible call. When a call fails it returns a non-zero status and leaves a message for
 * the calling thread in `kiln_last_error()` naming the check and the values, e.g.
 *   "kiln_binary_f32: shape[1] is -3: dimensions must be >= 0".
 * Out-parameters are set to a neutral value (NULL / 0) before any check, so a failed call never
 * leaves garbage behind. Native code never aborts, prints or throws across this boundary.
 *
 * Memory is the caller's: buffers come from `kiln_alloc` (64-byte aligned, accounted) or from
 * anywhere else the caller owns; ops read and write raw addresses. Sizes are `int64_t`.
 * Tensors are described by (ndim, shape, strides) with strides in ELEMENTS; a stride of 0 repeats
 * an element (broadcasting); negative strides are refused.
 *
 * Worked example (error handling elided once, shown once):
 *
 *     float *a, *b;
 *     kiln_alloc(4 * sizeof(float), (void**)&a);
 *     kiln_alloc(4 * sizeof(float), (void**)&b);
 *     int64_t shape[1] = {4}, unit[1] = {1};
 *     ... fill a and b ...
 *     if (kiln_binary_f32(KILN_BINARY_ADD, 1, shape, a, unit, b, unit, b, unit) != KILN_OK)
 *         fprintf(stderr, "%s\n", kiln_last_error());
 *     double s; kiln_sum_f32(1, shape, b, unit, &s);
 *     kiln_free(a); kiln_free(b);
 *
 * Sections: status and errors · library info and CPU dispatch · memory · threads · data ops.
 * The header compiles as C99 and as C++; it uses no C++ types.
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  define KILN_API __declspec(dllexport)
#else
#  define KILN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================
 * Status and errors
 * ========================================================================================== */

/** Returned by every fallible call. Java maps each to `dev.kiln.KilnException.Status`. */
typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARGUMENT = 1, /* NULL where a pointer is needed, negative size, bad enum … */
    KILN_ERR_OUT_OF_MEMORY = 2,    /* the allocator could not provide the bytes asked for */
    KILN_ERR_UNSUPPORTED = 3,      /* a valid request this build or CPU cannot serve */
    KILN_ERR_SHAPE_MISMATCH = 4,   /* shapes that do not broadcast or do not fit together */
    KILN_ERR_DTYPE_MISMATCH = 5,   /* an element type the op does not take */
    KILN_ERR_OVERFLOW = 6,         /* a size whose byte count overflows int64 */
    KILN_ERR_INTERNAL = 7          /* a bug in Kiln: please report the message */
} kiln_status;

/** Text of the last failure on the calling thread ("" if none). Valid until the thread's next
 *  failing call; never NULL; owned by Kiln. */
KILN_API const char* kiln_last_error(void);

/** Stable name of a status ("KILN_ERR_SHAPE_MISMATCH"); "KILN_ERR_UNKNOWN" for other values. */
KILN_API const char* kiln_status_name(int32_t status);

/* ============================================================================================
 * Library information and CPU dispatch
 * ========================================================================================== */

/** Version string "MAJOR.MINOR.PATCH" of the native library; static storage. */
KILN_API const char* kiln_version(void);

/** CPU feature bits, detected once when the library loads (CPUID + XGETBV: a feature counts only
 *  when the OS saves its registers). */
typedef enum kiln_cpu_feature {
    KILN_CPU_SSE42 = 1 << 0,
    KILN_CPU_AVX = 1 << 1,
    KILN_CPU_AVX2 = 1 << 2,
    KILN_CPU_FMA = 1 << 3,
    KILN_CPU_F16C = 1 << 4,
    KILN_CPU_AVX512F = 1 << 5,
    KILN_CPU_AVX512BW = 1 << 6,
    KILN_CPU_AVX512DQ = 1 << 7,
    KILN_CPU_AVX512VL = 1 << 8,
    KILN_CPU_AVX512VNNI = 1 << 9,
    KILN_CPU_AVX512BF16 = 1 << 10,
    KILN_CPU_AMX = 1 << 11
} kiln_cpu_feature;

/** Writes the feature bits of this CPU (an OR of `kiln_cpu_feature`) into *out. */
KILN_API kiln_status kiln_cpu_features(uint64_t* out);

/** Instruction-set levels the kernels are built for, best last. */
typedef enum kiln_isa {
    KILN_ISA_PORTABLE = 0, /* plain C++, any x86-64 (and the twin of every test reference) */
    KILN_ISA_AVX2 = 1,     /* AVX2 + FMA + F16C */
    KILN_ISA_AVX512 = 2    /* AVX-512 F/BW/DQ/VL */
} kiln_isa;

/** The best ISA this CPU supports. */
KILN_API kiln_status kiln_isa_best(int32_t* out);
/** The ISA the dispatch tables use now. */
KILN_API kiln_status kiln_isa_get(int32_t* out);
/** Forces the dispatch tables to `isa` (for tests and for working around a CPU bug).
 *  KILN_ERR_UNSUPPORTED if this CPU lacks it: Kiln never runs an instruction the CPU lacks.
 *  The environment variable KILN_ISA=portable|avx2|avx512 does the same when the library loads.
 *  Meant for start-up: calls already running finish on the table they started with. */
KILN_API kiln_status kiln_isa_set(int32_t isa);
/** "portable", "avx2", "avx512"; "unknown" for other values. */
KILN_API const char* kiln_isa_name(int32_t isa);

/* ============================================================================================
 * Memory
 * ========================================================================================== */

/** Accounting of everything allocated through kiln_alloc. */
typedef struct kiln_memory_stats {
    int64_t bytes_in_use;      /* requested bytes not yet freed */
    int64_t peak_bytes_in_use; /* high-water mark of bytes_in_use */
    int64_t live_allocations;  /* allocations not yet freed */
    int64_t total_allocations; /* allocations ever made */
} kiln_memory_stats;

/** Allocates `bytes` (>= 0) zero-filled bytes aligned to 64. *out is NULL on failure.
 *  A request of 0 bytes returns a valid, unique pointer that must be freed too. */
KILN_API kiln_status kiln_alloc(int64_t bytes, void** out);
/** Frees memory from kiln_alloc. NULL is a no-op. A pointer Kiln did not allocate, or one freed
 *  already, is detected (its header is checked) and refused with KILN_ERR_INVALID_ARGUMENT. */
KILN_API kiln_status kiln_free(void* ptr);
/** Fills *out with the current accounting. */
KILN_API kiln_status kiln_memory_stats_get(kiln_memory_stats* out);

/* ============================================================================================
 * Threads
 * ========================================================================================== */

/** Sets the size of Kiln's fixed thread pool (1 .. 1024; the calling thread counts as one).
 *  Default: the number of cores, or KILN_NUM_THREADS from the environment at load.
 *  Do not call while ops run on other threads. */
KILN_API kiln_status kiln_threads_set(int32_t n);
/** Writes the pool size into *out. */
KILN_API kiln_status kiln_threads_get(int32_t* out);

/* ============================================================================================
 * Element types and data ops
 *
 * Shape and strides: `ndim` in 0..KILN_MAX_DIMS (0 = a scalar); `shape[i] >= 0`; strides in
 * elements, >= 0. Arrays may be NULL when ndim is 0. Outputs must not partially overlap inputs
 * (exact aliasing, an in-place op, is fine).
 * ========================================================================================== */

#define KILN_MAX_DIMS 8

typedef enum kiln_dtype {
    KILN_DTYPE_F32 = 0,
    KILN_DTYPE_BF16 = 1,
    KILN_DTYPE_F16 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_U8 = 4,
    KILN_DTYPE_I32 = 5,
    KILN_DTYPE_I4 = 6 /* two signed 4-bit values per byte, element 2k in the low nibble */
} kiln_dtype;

typedef enum kiln_binary_op {
    KILN_BINARY_ADD = 0,
    KILN_BINARY_SUB = 1,
    KILN_BINARY_MUL = 2,
    KILN_BINARY_DIV = 3,
    KILN_BINARY_MAX = 4,
    KILN_BINARY_MIN = 5
} kiln_binary_op;

/** out = a (op) b elementwise over `shape`; a and b may broadcast through zero strides. */
KILN_API kiln_status kiln_binary_f32(int32_t op, int32_t ndim, const int64_t* shape,
                                     const float* a, const int64_t* a_strides,
                                     const float* b, const int64_t* b_strides,
                                     float* out, const int64_t* out_strides);

typedef enum kiln_unary_op {
    KILN_UNARY_IDENTITY = 0,
    KILN_UNARY_RELU = 1,       /* max(x, 0); NaN stays NaN */
    KILN_UNARY_LEAKY_RELU = 2, /* x < 0 ? alpha * x : x */
    KILN_UNARY_GELU = 3,       /* x/2 (1 + erf(x / sqrt 2)), erf to 1.5e-7 absolute */
    KILN_UNARY_SIGMOID = 4,
    KILN_UNARY_TANH = 5,
    KILN_UNARY_EXP = 6,
    KILN_UNARY_LOG = 7,
    KILN_UNARY_SQRT = 8,
    KILN_UNARY_NEG = 9,
    KILN_UNARY_ABS = 10,
    KILN_UNARY_SQUARE = 11,
    KILN_UNARY_GELU_TANH = 12, /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    KILN_UNARY_SILU = 13,      /* x sigmoid(x) (swish) */
    KILN_UNARY_ELU = 14,       /* x > 0 ? x : alpha (exp(x) - 1) */
    KILN_UNARY_SOFTPLUS = 15,  /* log(1 + exp(x)), without overflow */
    KILN_UNARY_SELU = 16,      /* 1.0507009873554805 (x > 0 ? x : 1.6732632423543772 (exp(x) - 1)) */
    KILN_UNARY_MISH = 17,      /* x tanh(softplus(x)) */
    KILN_UNARY_BOUNDED_RELU = 18, /* min(max(x, 0), alpha): ReLU6 with alpha 6 */
    KILN_UNARY_HARDTANH = 19,  /* min(max(x, -alpha), alpha) */
    KILN_UNARY_HARD_SIGMOID = 20, /* min(max(alpha x + 0.5, 0), 1): alpha 1/6 is PyTorch's Hardsigmoid */
    KILN_UNARY_HARD_SWISH = 21    /* x min(max(x + 3, 0), 6) / 6 (PyTorch's Hardswish) */
} kiln_unary_op;
/** The last kiln_unary_op. */
#define KILN_UNARY_LAST KILN_UNARY_HARD_SWISH

/** out = op(a) elementwise; `alpha` is LeakyReLU's negative slope (ignored by other ops).
 *  Vector versions agree with the scalar definitions to about 2e-6 relative (documented per op in
 *  the tests); out may be a itself. */
KILN_API kiln_status kiln_unary_f32(int32_t op, float alpha, int32_t ndim, const int64_t* shape,
                                    const float* a, const int64_t* a_strides,
                                    float* out, const int64_t* out_strides);

/** out = alpha * a elementwise. */
KILN_API kiln_status kiln_scale_f32(int32_t ndim, const int64_t* shape,
                                    const float* a, const int64_t* a_strides, float alpha,
                                    float* out, const int64_t* out_strides);

/** *out = the sum of all elements of a, accumulated in blocks of float lanes whose partial sums
 *  are added in double, in an order fixed by the shape (not the thread count). 0 for no elements. */
KILN_API kiln_status kiln_sum_f32(int32_t ndim, const int64_t* shape,
                                  const float* a, const int64_t* a_strides, double* out);

/** Copies elements of `elem_size` bytes (1, 2, 4 or 8) from src to dst laid out by their strides. */
KILN_API kiln_status kiln_copy_strided(int32_t elem_size, int32_t ndim, const int64_t* shape,
                                       const void* src, const int64_t* src_strides,
                                       void* dst, const int64_t* dst_strides);

/** Writes the `elem_size`-byte pattern at `pattern` into every element of dst. */
KILN_API kiln_status kiln_fill_pattern(int32_t elem_size, int32_t ndim, const int64_t* shape,
                                       void* dst, const int64_t* dst_strides, const void* pattern);

typedef enum kiln_random_kind {
    KILN_RANDOM_UNIFORM = 0, /* a = low, b = high: values in [low, high) */
    KILN_RANDOM_NORMAL = 1   /* a = mean, b = standard deviation (>= 0) */
} kiln_random_kind;

/** Fills a F32, BF16 or F16 tensor with seeded random values. Element i of the logical
 *  (row-major) order gets a value computed from (seed, i) alone by a counter-based generator,
 *  so the result depends on neither the strides nor the thread count nor the ISA. */
KILN_API kiln_status kiln_fill_random(int32_t dtype, int32_t kind, int32_t ndim,
                                      const int64_t* shape, void* dst, const int64_t* dst_strides,
                                      double a, double b, uint64_t seed);

/** Converts n contiguous elements from src_dtype to dst_dtype. Supported pairs: F32 <-> BF16,
 *  F32 <-> F16 (round to nearest even; NaN stays NaN). */
KILN_API kiln_status kiln_convert(int32_t src_dtype, const void* src, int32_t dst_dtype, void* dst,
                                  int64_t n);

/* ============================================================================================
 * Row-wise and axis ops over contiguous f32 data.
 *
 * A contiguous tensor reduced along one axis is viewed as [outer, len, inner] (outer = product of
 * the dims before the axis, inner = product of those after); the result is [outer, inner].
 * Softmax, layer norm, argmax and top-k work on the last axis of [rows, cols]. Callers with
 * strided data make a contiguous copy first (the Java API does).
 * ========================================================================================== */

typedef enum kiln_reduce_op {
    KILN_REDUCE_SUM = 0,
    KILN_REDUCE_MEAN = 1,
    KILN_REDUCE_MAX = 2, /* NaN propagates */
    KILN_REDUCE_MIN = 3  /* NaN propagates */
} kiln_reduce_op;

/** out[o][i] = op over r of a[o][r][i]. len = 0 gives 0 for SUM, NaN for MEAN, and is refused for
 *  MAX/MIN. Sums accumulate in double. out must not overlap a. */
KILN_API kiln_status kiln_reduce_f32(int32_t op, int64_t outer, int64_t len, int64_t inner,
                                     const float* a, float* out);

/** Softmax (log_softmax = 0) or log-softmax (1) of each row; y may be x. A row holding NaN, or
 *  +Inf, becomes NaN. */
KILN_API kiln_status kiln_softmax_f32(int32_t log_softmax, int64_t rows, int64_t cols, const float* x,
                                      float* y);

/** Layer norm of each row over its cols: y = (x - mean) / sqrt(var + eps) * gamma + beta, var
 *  biased; gamma, beta (cols floats) may be NULL; mean and rstd (rows floats each, for the
 *  backward pass) may be NULL. eps must be >= 0. y may be x. */
KILN_API kiln_status kiln_layer_norm_f32(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                         const float* beta, float eps, float* y, float* mean, float* rstd);

/** Index of the largest element of each row (the first on ties; a NaN counts as largest, the
 *  first NaN wins, as NumPy). cols must be >= 1. */
KILN_API kiln_status kiln_argmax_f32(int64_t rows, int64_t cols, const float* x, int32_t* out);

/** The k largest elements of each row, largest first (ties: lower index first; NaN largest), with
 *  their indices. 1 <= k <= cols. values and indices are rows x k. */
KILN_API kiln_status kiln_topk_f32(int64_t rows, int64_t cols, int64_t k, const float* x, float* values,
                                   int32_t* indices);

/* ============================================================================================
 * GEMM (fp32 and bf16), row-major: C = alpha * op(A) * op(B) + beta * C, then the epilogue.
 *
 * op(A) is M x K: A itself (trans_a = 0, element [i][k] at a[i*lda + k]) or the transpose of a
 * K x M matrix (trans_a = 1, element at a[k*lda + i]); likewise op(B) is K x N. Leading dimensions
 * must be >= the row length they step over. beta = 0 never reads C (it may hold NaN). C must not
 * overlap A or B. Large products run on Kiln's pool, small ones (under 2^18 multiply-adds, 2^16 when
 * M <= 16) on the calling thread; the result is the same for every thread count.
 * ========================================================================================== */

/** Applied to each tile of C after the last accumulation, while it is in L1:
 *    C[i][j] = act(C[i][j] + bias[j]) + residual[i * ld_residual + j]
 *  bias and residual may be NULL; activation is a kiln_unary_op (IDENTITY for none). */
typedef struct kiln_epilogue {
    const float* bias;
    int32_t activation;
    float activation_alpha;
    const float* residual;
    int64_t ld_residual;
} kiln_epilogue;

/** fp32 GEMM. `epilogue` may be NULL. */
KILN_API kiln_status kiln_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                float alpha, const float* a, int64_t lda,
                                const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                                const kiln_epilogue* epilogue);

/** B packed once for the ISA in use (weights at plan-compile time), reused by every call. */
typedef struct kiln_packed_b kiln_packed_b;

/** Packs op(B) (K x N) into a new kiln_packed_b (*out; NULL on failure). The packed copy is
 *  independent of b afterwards. Free with kiln_packed_b_destroy. */
KILN_API kiln_status kiln_sgemm_pack_b(int32_t trans_b, int64_t k, int64_t n, const float* b,
                                       int64_t ldb, kiln_packed_b** out);
/** Frees a packed B (NULL is a no-op). */
KILN_API kiln_status kiln_packed_b_destroy(kiln_packed_b* packed);
/** K and N of a packed B, and the bytes it holds. */
KILN_API kiln_status kiln_packed_b_info(const kiln_packed_b* packed, int64_t* k, int64_t* n,
                                        int64_t* bytes);
/** fp32 GEMM with a pre-packed B: C (M x N) = alpha * op(A) * B + beta * C, then the epilogue.
 *  Uses the kernels B was packed for, whatever the dispatch level is now. */
KILN_API kiln_status kiln_sgemm_packed(int32_t trans_a, int64_t m, float alpha, const float* a,
                                       int64_t lda, const kiln_packed_b* b, float beta, float* c,
                                       int64_t ldc, const kiln_epilogue* epilogue);

/** bf16 GEMM: A and B hold bf16 (raw 16-bit patterns), C is f32; products are exact and accumulate
 *  in f32 (with AVX512_BF16: vdpbf16ps, pairs of k steps per instruction; elsewhere the operands are
 *  converted to f32 while packing and the f32 kernels run). Same conventions as kiln_sgemm. */
KILN_API kiln_status kiln_gemm_bf16(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                    float alpha, const uint16_t* a, int64_t lda,
                                    const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc,
                                    const kiln_epilogue* epilogue);
/** Packs a bf16 op(B) once for kiln_gemm_bf16_packed (free with kiln_packed_b_destroy). */
KILN_API kiln_status kiln_gemm_bf16_pack_b(int32_t trans_b, int64_t k, int64_t n, const uint16_t* b,
                                           int64_t ldb, kiln_packed_b** out);
/** bf16 GEMM with a B packed by kiln_gemm_bf16_pack_b. */
KILN_API kiln_status kiln_gemm_bf16_packed(int32_t trans_a, int64_t m, float alpha, const uint16_t* a,
                                           int64_t lda, const kiln_packed_b* b, float beta, float* c,
                                           int64_t ldc, const kiln_epilogue* epilogue);

/* ============================================================================================
 * Inference plans: a sequence of layers compiled once (weights packed, Dense + activation fused,
 * workspace sized for a maximum batch) and run with one call per forward pass.
 *
 *     kiln_plan* p;  kiln_plan_create(784, 256, &p);            // input features, max batch
 *     kiln_plan_add_dense(p, 512, w1, b1, KILN_UNARY_RELU, 0);  // w1: 784 x 512 row-major
 *     kiln_plan_add_dense(p, 10, w2, b2, KILN_UNARY_IDENTITY, 0);
 *     kiln_plan_add_softmax(p, 0);
 *     kiln_plan_compile(p);
 *     int64_t ws; kiln_plan_info(p, NULL, NULL, NULL, &ws);     // workspace bytes per caller
 *     void* work;  kiln_alloc(ws, &work);                       // 64-byte aligned
 *     kiln_plan_run(p, batch, x, y, work, ws);                  // x: batch x 784, y: batch x 10
 *
 * Layers copy (and pack) their parameters when added: the caller's arrays may be freed after.
 * A compiled plan is immutable and may run on many threads at once, each with its own workspace.
 * ========================================================================================== */

typedef struct kiln_plan kiln_plan;

/** Pooling modes of kiln_plan_add_pool and kiln_trainer_add_pool. */
typedef enum kiln_pool_mode { KILN_POOL_MEAN = 0, KILN_POOL_SUM = 1, KILN_POOL_MAX = 2 } kiln_pool_mode;

/** A new, empty plan for inputs of `input_features` per row and batches of at most `max_batch`. */
KILN_API kiln_status kiln_plan_create(int64_t input_features, int64_t max_batch, kiln_plan** out);
/** Dense layer: y = activation(x W + b); W is in_features x out_features row-major, b may be NULL. */
KILN_API kiln_status kiln_plan_add_dense(kiln_plan* plan, int64_t out_features, const float* weight,
                                         const float* bias, int32_t activation, float activation_alpha);
/** Elementwise activation (a kiln_unary_op); fused into a preceding Dense at compile time. */
KILN_API kiln_status kiln_plan_add_activation(kiln_plan* plan, int32_t activation, float activation_alpha);
/** Softmax (log_softmax = 0) or log-softmax (1) over the features of each row. */
KILN_API kiln_status kiln_plan_add_softmax(kiln_plan* plan, int32_t log_softmax);
/** Layer norm over the features of each row; gamma and beta (features floats) may be NULL. */
KILN_API kiln_status kiln_plan_add_layer_norm(kiln_plan* plan, const float* gamma, const float* beta, float eps);
/** Residual add: the current value plus value `from` (0: the input, i: the output of layer i, in
 *  the order layers were added), of the same width. Fused into a Dense right before it. */
KILN_API kiln_status kiln_plan_add_residual(kiln_plan* plan, int64_t from);
/** Branch: the next layer reads the earlier value `from` (numbered as for a residual) instead of
 *  the current one, which starts a second path through the graph, a projection shortcut for one:
 *  ...a dense path..., branch(0), dense (the shortcut), residual(end of the first path). Every
 *  value but the last must be read by a later layer, so the path left must come back through a
 *  residual: compile fails, naming the value, where one is never read. Adds no computation. */
KILN_API kiln_status kiln_plan_add_branch(kiln_plan* plan, int64_t from);
/** Elementwise product of the current value and value `from` (same width; numbered as for a
 *  residual): a gate, as in GLU-style blocks, silu(x W1) * (x W3). */
KILN_API kiln_status kiln_plan_add_multiply(kiln_plan* plan, int64_t from);
/** Concatenation of each row's features: the current value's, then value `from`'s (any widths;
 *  the result is their sum, at most 2^31). */
KILN_API kiln_status kiln_plan_add_concat(kiln_plan* plan, int64_t from);
/** Features begin..end-1 of each row of the current value (0 <= begin < end <= its width): one
 *  part of a value split in two, as torch's chunk and split do. */
KILN_API kiln_status kiln_plan_add_slice(kiln_plan* plan, int64_t begin, int64_t end);
/** y = x * scale + shift per feature (scale, shift: features floats, copied; NULL means 1 and 0;
 *  non-finite values are refused): a batch norm in inference mode, or scaling by constants. */
KILN_API kiln_status kiln_plan_add_scale_shift(kiln_plan* plan, const float* scale, const float* shift);
/** PReLU with a slope per feature: y = x where x > 0, else x * slope (slope: features floats,
 *  copied; NULL means 0.25 each, PyTorch's initial value; non-finite slopes are refused), as
 *  torch's nn.PReLU(num_parameters=features). */
KILN_API kiln_status kiln_plan_add_prelu(kiln_plan* plan, const float* slope);
/** L2 normalization of each row: y = x / max(||x||_2, eps) (eps finite, >= 0; torch's
 *  F.normalize(x, dim=1) uses 1e-12), as embedding models end. */
KILN_API kiln_status kiln_plan_add_l2_normalize(kiln_plan* plan, float eps);
/** Pooling over positions: the current value's features are `positions` vectors of width /
 *  positions, one after the other (an embedding's output), and this layer outputs their mean
 *  (mode KILN_POOL_MEAN), sum (KILN_POOL_SUM) or elementwise maximum (KILN_POOL_MAX): a bag of
 *  embeddings, as torch's x.mean(1) or EmbeddingBag. */
KILN_API kiln_status kiln_plan_add_pool(kiln_plan* plan, int32_t mode, int64_t positions);
/** Embedding lookup as the first layer: the plan's input is then int32 token ids (batch x
 *  input_features positions) and this layer outputs input_features x dim floats per row (table:
 *  vocab x dim, copied). An id outside 0..vocab-1 fails the run, naming the row and position. */
KILN_API kiln_status kiln_plan_add_embedding(kiln_plan* plan, int64_t vocab, int64_t dim, const float* table);
/** Freezes the plan: fuses, sizes the workspace. No layer may be added afterwards. */
KILN_API kiln_status kiln_plan_compile(kiln_plan* plan);
/** Input and output features, maximum batch and workspace bytes of a compiled plan (any may be NULL). */
KILN_API kiln_status kiln_plan_info(const kiln_plan* plan, int64_t* input_features, int64_t* output_features,
                                    int64_t* max_batch, int64_t* workspace_bytes);
/** One forward pass of `batch` rows (1..max_batch): input batch x in (floats, or int32 token ids
 *  when the first layer is an embedding), output batch x out (both contiguous), `workspace` of
 *  at least workspace_bytes, 64-byte aligned, owned by this caller. */
KILN_API kiln_status kiln_plan_run(const kiln_plan* plan, int64_t batch, const void* input, float* output,
                                   void* workspace, int64_t workspace_bytes);
/** Frees a plan (NULL is a no-op). */
KILN_API kiln_status kiln_plan_destroy(kiln_plan* plan);

/* ============================================================================================
 * Training: a sequence of layers with their parameters, gradients and optimizer state, compiled
 * once; kiln_trainer_step runs forward, loss, backward and the optimizer update in one call over
 * buffers preallocated for a maximum batch, with no allocation.
 *
 *     kiln_trainer* t;  kiln_trainer_create(784, 128, &t);
 *     kiln_trainer_add_dense(t, 256, w1, b1);  kiln_trainer_add_activation(t, KILN_UNARY_RELU, 0);
 *     kiln_trainer_add_dense(t, 10, w2, b2);
 *     kiln_trainer_set_loss(t, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0, NULL);
 *     kiln_optimizer o = {KILN_OPT_ADAM, ...};  kiln_trainer_set_optimizer(t, &o);
 *     kiln_trainer_compile(t);
 *     kiln_trainer_step(t, batch, x, labels, NULL, 1e-3f, &loss);
 *
 * Parameters are copied in when layers are added and read back with kiln_trainer_param. A step is
 * deterministic for a fixed seed and thread count. A trainer is used by one thread at a time. The
 * optimizer update reads subnormal floats as zero and writes none (the calling thread's
 * floating-point mode is restored after).
 * ========================================================================================== */

typedef struct kiln_trainer kiln_trainer;

typedef enum kiln_loss {
    KILN_LOSS_SOFTMAX_CROSS_ENTROPY = 0, /* targets: int32 class ids; softmax fused */
    KILN_LOSS_BCE_WITH_LOGITS = 1,       /* targets: float in [0, 1], one per output */
    KILN_LOSS_MSE = 2,                   /* targets: float, one per output */
    KILN_LOSS_HUBER = 3                  /* targets: float; delta is the quadratic zone's half-width */
} kiln_loss;

typedef enum kiln_optimizer_kind {
    KILN_OPT_SGD = 0,     /* momentum, nesterov */
    KILN_OPT_ADAM = 1,    /* beta1, beta2, eps */
    KILN_OPT_ADAMW = 2,   /* Adam with decoupled weight_decay */
    KILN_OPT_RMSPROP = 3  /* beta2 is the squared-gradient decay (alpha), eps */
} kiln_optimizer_kind;

typedef struct kiln_optimizer {
    int32_t kind;
    int32_t nesterov;
    float momentum;
    float beta1, beta2, eps;
    float l2;           /* coupled L2: adds l2 * w to every weight gradient (biases, norms excluded) */
    float weight_decay; /* decoupled: w -= lr * weight_decay * w each step (weights only) */
    float clip_norm;    /* clip the global gradient norm to this (0: off) */
} kiln_optimizer;

KILN_API kiln_status kiln_trainer_create(int64_t input_features, int64_t max_batch, kiln_trainer** out);
/** Dense y = x W + b, W in x out row-major (copied), b may be NULL (no bias). */
KILN_API kiln_status kiln_trainer_add_dense(kiln_trainer* t, int64_t out_features, const float* weight,
                                            const float* bias);
/** RELU, LEAKY_RELU (alpha), GELU, GELU_TANH, SIGMOID, TANH, SILU, ELU (alpha), SOFTPLUS, SELU, MISH, BOUNDED_RELU
 *  (alpha), HARDTANH (alpha), HARD_SIGMOID (alpha), HARD_SWISH or IDENTITY. */
KILN_API kiln_status kiln_trainer_add_activation(kiln_trainer* t, int32_t activation, float alpha);
/** Inverted dropout with drop probability p in [0, 1): the identity in evaluation. */
KILN_API kiln_status kiln_trainer_add_dropout(kiln_trainer* t, float p);
/** Layer norm (gamma, beta copied; NULL means 1 and 0, still trained). */
KILN_API kiln_status kiln_trainer_add_layer_norm(kiln_trainer* t, const float* gamma, const float* beta, float eps);
/** Softmax (0) or log-softmax (1) as a layer (for losses other than the fused cross-entropy). */
KILN_API kiln_status kiln_trainer_add_softmax(kiln_trainer* t, int32_t log_softmax);
/** Residual Add: the current value plus value `from` (0: the input, i: the output of layer i),
 *  which must have the same width. */
KILN_API kiln_status kiln_trainer_add_residual(kiln_trainer* t, int64_t from);
/** Branch: the next layer reads value `from` instead of the current one (as kiln_plan_add_branch);
 *  a value read by several layers gets the sum of their gradients. */
KILN_API kiln_status kiln_trainer_add_branch(kiln_trainer* t, int64_t from);
/** Elementwise product with value `from` (as kiln_plan_add_multiply). */
KILN_API kiln_status kiln_trainer_add_multiply(kiln_trainer* t, int64_t from);
/** Concatenation with value `from`'s features (as kiln_plan_add_concat). */
KILN_API kiln_status kiln_trainer_add_concat(kiln_trainer* t, int64_t from);
/** Features begin..end-1 of the current value (as kiln_plan_add_slice). */
KILN_API kiln_status kiln_trainer_add_slice(kiln_trainer* t, int64_t begin, int64_t end);
/** y = x * scale + shift per feature, both trained (copied; NULL means 1 and 0). */
KILN_API kiln_status kiln_trainer_add_scale_shift(kiln_trainer* t, const float* scale, const float* shift);
/** PReLU with a slope per feature, trained (as kiln_plan_add_prelu; copied, NULL means 0.25). */
KILN_API kiln_status kiln_trainer_add_prelu(kiln_trainer* t, const float* slope);
/** L2 normalization of each row (as kiln_plan_add_l2_normalize). */
KILN_API kiln_status kiln_trainer_add_l2_normalize(kiln_trainer* t, float eps);
/** Pooling over positions (as kiln_plan_add_pool); a maximum's gradient goes to the first position
 *  holding it. */
KILN_API kiln_status kiln_trainer_add_pool(kiln_trainer* t, int32_t mode, int64_t positions);
/** Embedding as the first layer: x is then int32 token ids (batch x input_features) and the layer
 *  outputs input_features x dim floats per row; the table (vocab x dim, copied) is parameter 0. */
KILN_API kiln_status kiln_trainer_add_embedding(kiln_trainer* t, int64_t vocab, int64_t dim, const float* table);
/** The loss; class_weights (outputs floats, cross-entropy only) may be NULL. */
KILN_API kiln_status kiln_trainer_set_loss(kiln_trainer* t, int32_t loss, float huber_delta,
                                           const float* class_weights);
KILN_API kiln_status kiln_trainer_set_optimizer(kiln_trainer* t, const kiln_optimizer* opt);
/** Seed of the dropout masks (default 0). */
KILN_API kiln_status kiln_trainer_set_seed(kiln_trainer* t, uint64_t seed);
KILN_API kiln_status kiln_trainer_compile(kiln_trainer* t);
/** One training step on `batch` rows: x batch x in (floats, or int32 ids after an embedding); targets int32 class ids (cross-entropy) or
 *  batch x out floats; sample_weights (batch floats) may be NULL. The loss is the weighted mean;
 *  `correct` (may be NULL) gets the rows whose argmax equals the label (cross-entropy; else 0).
 *  Returns KILN_ERR_INVALID_ARGUMENT, with nothing updated, when the targets are out of range or
 *  the loss or a gradient is not finite. */
KILN_API kiln_status kiln_trainer_step(kiln_trainer* t, int64_t batch, const void* x, const void* targets,
                                       const float* sample_weights, float lr, double* loss, int64_t* correct);
/** Forward in evaluation mode (dropout off): adds the summed weighted loss, the summed weight and
 *  (cross-entropy) the count of rows whose argmax equals the label to the three accumulators. */
KILN_API kiln_status kiln_trainer_evaluate(kiln_trainer* t, int64_t batch, const void* x, const void* targets,
                                           const float* sample_weights, double* loss_sum, double* weight_sum,
                                           int64_t* correct);
/** Forward in evaluation mode: the last layer's output (logits for cross-entropy) into y. */
KILN_API kiln_status kiln_trainer_predict(kiln_trainer* t, int64_t batch, const void* x, float* y);
/** Number of parameter tensors (Dense: weight then bias if any; layer norm, scale-shift: gamma then
 *  beta; PReLU: its slopes). */
KILN_API kiln_status kiln_trainer_param_count(const kiln_trainer* t, int64_t* count);
/** Copies parameter i out (into_trainer = 0) or in (1), or its gradient from the last step out (2);
 *  n must equal its element count. */
KILN_API kiln_status kiln_trainer_param(kiln_trainer* t, int64_t i, int32_t into_trainer, float* data, int64_t n);
/** Element count and owning layer of parameter i. */
KILN_API kiln_status kiln_trainer_param_info(const kiln_trainer* t, int64_t i, int64_t* n, int64_t* layer);
/** Freezes parameter i (frozen = 1) or thaws it (0), before or after compile: a frozen parameter is
 *  not updated (its optimizer moments stay as they are, no weight decay) and its gradient is not
 *  computed (it reads as zeros and counts nothing toward clipping); gradients still flow through its
 *  layer to the layers before it. A frozen Dense layer skips its weight-gradient GEMM. */
KILN_API kiln_status kiln_trainer_freeze(kiln_trainer* t, int64_t i, int32_t frozen);
/** Whole trainer state (parameters, optimizer moments, step count) as bytes, for checkpoints. */
KILN_API kiln_status kiln_trainer_state_bytes(const kiln_trainer* t, int64_t* bytes);
KILN_API kiln_status kiln_trainer_save_state(const kiln_trainer* t, void* dst, int64_t bytes);
/** Restores a state saved from a trainer of the same structure (checked); nothing changes on error. */
KILN_API kiln_status kiln_trainer_load_state(kiln_trainer* t, const void* src, int64_t bytes);
/** Steps taken so far. */
KILN_API kiln_status kiln_trainer_steps(const kiln_trainer* t, int64_t* steps);
KILN_API kiln_status kiln_trainer_destroy(kiln_trainer* t);

/** Copies rows: dst row r = src row index[r] (row_bytes each), n rows; every index must be in
 *  0..src_rows-1. For gathering shuffled mini-batches without allocation. */
KILN_API kiln_status kiln_gather_rows(int64_t n, const int32_t* index, int64_t src_rows, int64_t row_bytes,
                                      const void* src, void* dst);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KILN_KILN_H */
