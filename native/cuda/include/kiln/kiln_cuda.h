/*
 * Kiln CUDA backend: a separate library (libkiln_cuda), built only when CMake finds a CUDA toolkit,
 * loaded only when a GPU is asked for. Same conventions as kiln.h: every call returns a kiln_status
 * (0 = KILN_OK), the message of the last failure on this thread is kiln_cuda_last_error(), and
 * nothing here aborts or prints. Pointers marked "device" are device memory from
 * kiln_cuda_alloc. Kernels run on the calling thread's stream (kiln_cuda_stream_set; default: the
 * per-thread default stream) and are asynchronous unless said otherwise.
 */
#ifndef KILN_KILN_CUDA_H
#define KILN_KILN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Message of the last failed kiln_cuda_* call on this thread ("" if none). */
KILN_API const char* kiln_cuda_last_error(void);

/** Number of usable devices; 0 (and KILN_OK) when there is no driver or no device, with the
 *  reason in kiln_cuda_last_error(). */
KILN_API kiln_status kiln_cuda_device_count(int32_t* count);

typedef struct kiln_cuda_device_info {
    char name[256];
    int32_t major, minor;          /* compute capability */
    int32_t multiprocessors;
    int64_t total_memory;          /* bytes */
    int32_t driver_version, runtime_version;
} kiln_cuda_device_info;

KILN_API kiln_status kiln_cuda_device_info_get(int32_t device, kiln_cuda_device_info* out);
/** Selects the device for this thread's later calls. */
KILN_API kiln_status kiln_cuda_device_set(int32_t device);

/** Device memory from a pooling allocator over cudaMalloc (freed blocks are reused by size class;
 *  no managed memory). 256-byte aligned. */
KILN_API kiln_status kiln_cuda_alloc(int64_t bytes, void** out);
KILN_API kiln_status kiln_cuda_free(void* device_ptr);
/** Returns pooled blocks to the driver, and this thread's pinned staging buffer (see kiln_cuda_copy). */
KILN_API kiln_status kiln_cuda_trim(void);
/** Bytes handed out and bytes held by the pool. */
KILN_API kiln_status kiln_cuda_memory(int64_t* in_use, int64_t* pooled);

/** Copies (kind: 0 host->device, 1 device->host, 2 device->device). Host<->device copies go
 *  through a pinned staging buffer (8 MiB per calling thread, freed when the thread ends); they
 *  complete before returning (synchronous). */
KILN_API kiln_status kiln_cuda_copy(void* dst, const void* src, int64_t bytes, int32_t kind);
/** Waits for this thread's stream. */
KILN_API kiln_status kiln_cuda_synchronize(void);
/** Uses a caller-owned cudaStream_t (as void*) for this thread's later kernels (NULL: default). */
KILN_API kiln_status kiln_cuda_stream_set(void* stream);

/* ---- kernels (all pointers device memory, contiguous, row-major) ---- */

/** out = op(a, b) elementwise over n floats (op: kiln_binary_op). */
KILN_API kiln_status kiln_cuda_binary_f32(int32_t op, int64_t n, const float* a, const float* b, float* out);
/** out = op(a) (op: kiln_unary_op; alpha for LEAKY_RELU). */
KILN_API kiln_status kiln_cuda_unary_f32(int32_t op, float alpha, int64_t n, const float* a, float* out);
/** Softmax (0) or log-softmax (1) of each row. */
KILN_API kiln_status kiln_cuda_softmax_f32(int32_t log_softmax, int64_t rows, int64_t cols, const float* x, float* y);
/** Layer norm of each row (gamma, beta may be NULL). */
KILN_API kiln_status kiln_cuda_layer_norm_f32(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                             const float* beta, float eps, float* y);
/** Sum of x into *out (device float), deterministic (fixed tree). */
KILN_API kiln_status kiln_cuda_sum_f32(int64_t n, const float* x, float* out);
/** Softmax cross-entropy: loss[r] = logsumexp(z_r) - z_r[label_r]; grad (may be NULL) = (softmax - onehot) / rows. */
KILN_API kiln_status kiln_cuda_softmax_xent_f32(int64_t rows, int64_t cols, const float* z, const int32_t* labels,
                                               float* loss, float* grad);

/** C = alpha op(A) op(B) + beta C with the epilogue of kiln.h (bias, residual: device pointers). */
KILN_API kiln_status kiln_cuda_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                                    int64_t ldc, const kiln_epilogue* epilogue);
/** bf16 A (m x k, row-major) times bf16 op(B) (trans_b 0: B is k x n; 1: B is n x k, the layout of
 *  nn.Linear's weights), fp32 accumulation on the tensor cores, C fp32 (m x n) = alpha A op(B) + beta C,
 *  then the epilogue. On sm_90 (Hopper): TMA copies and wgmma when A's and B's bases are 16-byte
 *  aligned and lda (and ldb when trans_b) are multiples of 8; a k x n B is first transposed into a
 *  pooled scratch buffer (one pass over B). Otherwise, or on sm_80/sm_89: WMMA fragments. The
 *  environment variable KILN_CUDA_GEMM=wmma|sm90 forces one kernel (sm90 fails with
 *  KILN_ERR_UNSUPPORTED where it cannot run). */
KILN_API kiln_status kiln_cuda_gemm_bf16(int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                        const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta,
                                        float* c, int64_t ldc, const kiln_epilogue* epilogue);
/** Fused optimizer steps over n parameters (same formulas as the CPU trainer's). step is 1-based. */
KILN_API kiln_status kiln_cuda_adam_f32(int64_t n, float* w, const float* g, float* m, float* v, float lr, float beta1,
                                       float beta2, float eps, float weight_decay, int32_t decoupled, int64_t step);
KILN_API kiln_status kiln_cuda_sgd_f32(int64_t n, float* w, const float* g, float* buf, float lr, float momentum,
                                      int32_t nesterov, float weight_decay);

/* ---- inference plans on the GPU ----
 * The CPU plan's sequential layers (kiln.h: kiln_plan_*) on the device:
 *
 *     kiln_cuda_plan* p;  kiln_cuda_plan_create(784, 256, &p);
 *     kiln_cuda_plan_add_dense(p, 512, w1, b1, KILN_UNARY_RELU, 0);   // w1: 784 x 512, host memory
 *     kiln_cuda_plan_add_dense(p, 10, w2, b2, KILN_UNARY_IDENTITY, 0);
 *     kiln_cuda_plan_add_softmax(p, 0);
 *     kiln_cuda_plan_compile(p);                                      // uploads the weights
 *     kiln_cuda_plan_run(p, batch, x, y);       // x, y device memory; async on this thread's stream
 *     kiln_cuda_plan_run_host(p, batch, hx, hy);  // or host memory in and out, synchronous
 *
 * Layers copy their parameters from host memory when added. The forward pass for each (batch,
 * input, output) a run meets is captured once as a CUDA graph (the 16 most recent are kept) and
 * replayed: reuse the same device buffers to stay on the fast path. Runs from several threads or
 * streams are ordered one after the other (they share the plan's activation buffers). Dense layers
 * with up to 8 rows use a GEMV kernel, larger batches kiln_cuda_sgemm. Not yet: residual and
 * embedding layers. */
typedef struct kiln_cuda_plan kiln_cuda_plan;
KILN_API kiln_status kiln_cuda_plan_create(int64_t input_features, int64_t max_batch, kiln_cuda_plan** out);
/** Dense: y = activation(x W + b); W is in_features x out_features row-major (host), b may be NULL. */
KILN_API kiln_status kiln_cuda_plan_add_dense(kiln_cuda_plan* plan, int64_t out_features, const float* weight,
                                             const float* bias, int32_t activation, float activation_alpha);
/** Elementwise activation; fused into a preceding Dense that has none at compile time. */
KILN_API kiln_status kiln_cuda_plan_add_activation(kiln_cuda_plan* plan, int32_t activation, float activation_alpha);
KILN_API kiln_status kiln_cuda_plan_add_softmax(kiln_cuda_plan* plan, int32_t log_softmax);
/** gamma, beta: features floats (host) or NULL. */
KILN_API kiln_status kiln_cuda_plan_add_layer_norm(kiln_cuda_plan* plan, const float* gamma, const float* beta,
                                                  float eps);
/** Fuses and uploads. Fails with KILN_ERR_UNSUPPORTED without a device; on failure nothing stays on
 *  the device and compile may be called again. */
KILN_API kiln_status kiln_cuda_plan_compile(kiln_cuda_plan* plan);
KILN_API kiln_status kiln_cuda_plan_info(const kiln_cuda_plan* plan, int64_t* input_features,
                                        int64_t* output_features, int64_t* max_batch);
/** One forward pass of batch (1..max_batch) rows: x batch x in, y batch x out, device memory, not
 *  overlapping. Asynchronous on this thread's stream. */
KILN_API kiln_status kiln_cuda_plan_run(kiln_cuda_plan* plan, int64_t batch, const float* x, float* y);
/** The same with x and y in host memory; returns when y is written. */
KILN_API kiln_status kiln_cuda_plan_run_host(kiln_cuda_plan* plan, int64_t batch, const float* x, float* y);
/** Waits for the plan's last forward and frees it (NULL is a no-op). */
KILN_API kiln_status kiln_cuda_plan_destroy(kiln_cuda_plan* plan);

/* ---- training on the GPU ----
 * A subset of the CPU trainer (kiln.h: kiln_trainer_*) with the same formulas: Dense and activation
 * layers (IDENTITY, RELU, LEAKY_RELU, GELU, GELU_TANH, SIGMOID, TANH), softmax cross-entropy (mean
 * over the batch), SGD (momentum, Nesterov, l2), Adam and AdamW (l2 or decoupled weight_decay, not
 * both). Not yet: clipping, RMSprop, dropout, layer norm, residuals, embeddings, other losses, sample
 * and class weights, checkpoints. Parameters are copied in when layers are added (host memory). */
typedef struct kiln_cuda_trainer kiln_cuda_trainer;
KILN_API kiln_status kiln_cuda_trainer_create(int64_t input_features, int64_t max_batch, kiln_cuda_trainer** out);
/** Dense y = x W + b, W in x out row-major (host, copied), b may be NULL (no bias). */
KILN_API kiln_status kiln_cuda_trainer_add_dense(kiln_cuda_trainer* t, int64_t out_features, const float* weight,
                                                const float* bias);
KILN_API kiln_status kiln_cuda_trainer_add_activation(kiln_cuda_trainer* t, int32_t activation, float alpha);
/** SGD by default (no momentum). KILN_ERR_UNSUPPORTED for what the GPU trainer does not have. */
KILN_API kiln_status kiln_cuda_trainer_set_optimizer(kiln_cuda_trainer* t, const kiln_optimizer* opt);
/** Allocates everything on the device (KILN_ERR_UNSUPPORTED without one). */
KILN_API kiln_status kiln_cuda_trainer_compile(kiln_cuda_trainer* t);
/** One step on batch rows: x (batch x in floats) and labels (batch int32 class ids) in device
 *  memory. Waits for the loss; if it is not finite (a label out of range, NaN or Inf), fails naming
 *  the step with nothing updated. `loss` (host, may be NULL) gets the mean loss. */
KILN_API kiln_status kiln_cuda_trainer_step(kiln_cuda_trainer* t, int64_t batch, const float* x,
                                           const int32_t* labels, float lr, double* loss);
/** Number of parameter tensors (per Dense: weight, then bias if any). */
KILN_API kiln_status kiln_cuda_trainer_param_count(const kiln_cuda_trainer* t, int64_t* count);
/** Copies parameter i out to host memory (direction 0), in from it (1), or its last gradient out (2);
 *  n must equal its element count. */
KILN_API kiln_status kiln_cuda_trainer_param(kiln_cuda_trainer* t, int64_t i, int32_t direction, float* data,
                                            int64_t n);
KILN_API kiln_status kiln_cuda_trainer_steps(const kiln_cuda_trainer* t, int64_t* steps);
KILN_API kiln_status kiln_cuda_trainer_destroy(kiln_cuda_trainer* t);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KILN_KILN_CUDA_H */
