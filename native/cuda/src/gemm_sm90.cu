// Hopper (sm_90a) bf16 GEMM: TMA bulk copies into 128-byte-swizzled shared memory, wgmma on the
// tensor cores, fp32 accumulators in registers, Kiln's epilogue in the store.
//
// Measured on an H200 (benchmarks/gpu/run.sh, 2026-11-29, one run): 707 TFLOP/s at 4096^3 and 762 at
// 8192^3 with B stored n x k, against cuBLAS (PyTorch) 712 and 776 on the same layout; 586 and 693
// with B k x n (transposed first), against 694 and 752. Repeats of one configuration in that run
// spread from 641 to 762 at 8192^3.
//
// A block computes a 128 x 256 tile of C with three warpgroups: one producer (a single thread issues
// the TMA copies of each 64-wide K slice of A and B into a ring of kStages buffers) and two consumers
// (each owns 64 rows: four wgmma m64n256k16 per K slice). Full/empty mbarriers hand the buffers back
// and forth, so copies run kStages - 1 slices ahead of the tensor cores. Tiles are visited in groups
// of 8 row panels, so the blocks in flight share their B columns in L2.
//
// Both operands are read K-major (A: rows of K, B: stored N x K, as nn.Linear keeps its weights); a
// row-major K x N B is transposed into a scratch buffer first (see gemm.cu). TMA zero-fills what lies
// past the edges of A and B, so any M, N, K work; only the stores check bounds. TMA needs 16-byte
// aligned bases and row strides (leading dimensions that are multiples of 8 elements): gemm.cu falls
// back to the WMMA kernel otherwise.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cudaTypedefs.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "common.cuh"
#include "gemm_common.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_SM90A 1
#endif

namespace kiln_cuda {
namespace {

constexpr int kBM = 128, kBN = 256, kBK = 64, kStages = 4, kConsumers = 2;
constexpr int kThreads90 = 128 * (kConsumers + 1);
[[maybe_unused]] constexpr int kGroupM = 8;

struct alignas(1024) Smem90 {
    __nv_bfloat16 a[kStages][kBM * kBK];  // each stage 16 KiB: a multiple of the 1 KiB swizzle atom
    __nv_bfloat16 b[kStages][kBN * kBK];  // 32 KiB
    uint64_t full[kStages];
    uint64_t empty[kStages];
};
constexpr size_t kSmem90 = sizeof(Smem90) + 1024;  // + room to align the dynamic buffer to 1 KiB

#ifdef KILN_SM90A
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int inner, int outer) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
        ::"r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(inner), "r"(outer)
        : "memory");
}

// The same copy, written at the same shared-memory offset in every CTA of the cluster named in
// cta_mask, each CTA's mbarrier at bar's offset counting the bytes it received.
__device__ __forceinline__ void tma_load_multicast(void* dst, const CUtensorMap* map, uint64_t* bar, int inner,
                                                   int outer, uint16_t cta_mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;"
        ::"r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(inner), "r"(outer), "h"(cta_mask)
        : "memory");
}

// Arrives on the mbarrier at bar's offset in CTA `rank` of this cluster.
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(smem_addr(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row core groups 1024 bytes apart.
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
    const uint64_t addr = smem_addr(p);
    return ((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// D (64 x 256, fp32, 128 registers a thread) += A (64 x 16) B (16 x 256), both from shared memory
// through their descriptors, both K-major.
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "%128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
          "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
          "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
          "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
          "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),
          "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),
          "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),
          "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),
          "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
          "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]),
          "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),
          "+f"(d[126]), "+f"(d[127])
        : "l"(desc_a), "l"(desc_b), "r"(1));
}
#endif  // KILN_SM90A

#ifdef KILN_SM90A
// C[i][jj] and C[i][jj + 1] (when jj + 1 < n) from alpha-scaled accumulators: beta C, then the epilogue.
__device__ __noinline__ void store_pair(float* c, int64_t ldc, int n, int64_t i, int64_t jj, float v0, float v1,
                                        float beta, Ep ep) {
    float* row = c + i * ldc;
    if (beta != 0.f) v0 += beta * row[jj];
    row[jj] = epilogue(ep, v0, i, jj);
    if (jj + 1 < n) {
        if (beta != 0.f) v1 += beta * row[jj + 1];
        row[jj + 1] = epilogue(ep, v1, i, jj + 1);
    }
}

// Work unit u in grouped order: kGroupM row panels at a time, all their column tiles. A unit is
// kCluster row tiles (one per CTA of a cluster) by one column tile.
template <int kCluster>
__device__ __forceinline__ void unit_coords(int u, int units_m, int tiles_n, int& um, int& tn) {
    constexpr int group_m = kGroupM / kCluster;
    const int per_group = group_m * tiles_n, group = u / per_group;
    const int first_m = group * group_m, group_rows = min(units_m - first_m, group_m);
    const int in_group = u % per_group;
    um = first_m + in_group % group_rows;
    tn = in_group / group_rows;
}
#endif

// kPipelined: each consumer keeps one K slice's wgmmas in flight while it issues the next, and frees
// a stage once the wgmmas that read it are done; otherwise it waits for every slice's wgmmas before
// going on. kCluster 2: two CTAs (vertically adjacent tiles, same columns) form a cluster; each loads
// its own A and half of the shared B tile, multicast into both, which halves B's L2 reads; a stage
// is free again once the consumers of both CTAs are done with it. The grid may hold fewer units
// than there are (persistent blocks): then a block loops over units, and its producer fills the next
// tile's stages while the consumers store the last one.
template <bool kPipelined, int kCluster>
__global__ void __launch_bounds__(kThreads90, 1)
    gemm_bf16_sm90_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b, int m,
                          int n, int k, float alpha, float beta, float* __restrict__ c, int64_t ldc, Ep ep,
                          int all_arrive, int probe) {
#ifdef KILN_SM90A
    extern __shared__ uint8_t smem_raw[];
    Smem90& sm = *reinterpret_cast<Smem90*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    const int tiles_m = (m + kBM - 1) / kBM, tiles_n = (n + kBN - 1) / kBN;
    const int units_m = (tiles_m + kCluster - 1) / kCluster, units = units_m * tiles_n;
    const int ktiles = (k + kBK - 1) / kBK;
    const uint32_t rank = kCluster > 1 ? cluster_rank() : 0;
    const int first_unit = int(blockIdx.x) / kCluster, unit_step = int(gridDim.x) / kCluster;

    if (threadIdx.x == 0) {
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&sm.full[s], 1);
            // Arrivals that free a stage: one per consumer warpgroup of each CTA of the cluster (or,
            // for comparison, every consumer thread: `all_arrive`).
            mbar_init(&sm.empty[s], kCluster > 1 || !all_arrive ? kCluster * kConsumers : kConsumers * 128);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (kCluster > 1)
        cluster_sync();  // the peer's barriers exist before anything is multicast or arrived on
    else
        __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (tid == 0) {
            int it = 0;  // K slices loaded by this block so far, over all its tiles
            for (int u = first_unit; u < units; u += unit_step) {
                int um, tn;
                unit_coords<kCluster>(u, units_m, tiles_n, um, tn);
                const int tm = um * kCluster + int(rank);
                for (int kt = 0; kt < ktiles; ++kt, ++it) {
                    const int s = it % kStages;
                    if (it >= kStages) mbar_wait(&sm.empty[s], uint32_t((it / kStages) - 1) & 1u);
                    if (probe & 2) {  // timing probe: no copies (the tensor cores alone)
                        mbar_arrive(&sm.full[s]);
                        continue;
                    }
                    mbar_expect_tx(&sm.full[s], uint32_t((kBM + kBN) * kBK * 2));
                    tma_load(sm.a[s], &map_a, &sm.full[s], kt * kBK, tm * kBM);
                    if (kCluster > 1) {
                        constexpr int part = kBN / kCluster;
                        tma_load_multicast(&sm.b[s][int(rank) * part * kBK], &map_b, &sm.full[s], kt * kBK,
                                           tn * kBN + int(rank) * part, uint16_t((1u << kCluster) - 1));
                    } else {
                        tma_load(sm.b[s], &map_b, &sm.full[s], kt * kBK, tn * kBN);
                    }
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        const int cw = wg - 1;  // this consumer's 64 rows of the tile
        const int warp = tid / 32, lane = tid % 32;
        const bool plain = beta == 0.f && ep.bias == nullptr && ep.act == KILN_UNARY_IDENTITY &&
                           ep.residual == nullptr && (reinterpret_cast<uintptr_t>(c) & 7) == 0 && ldc % 2 == 0;
        // Frees stage s: thread r of the warpgroup arrives on CTA r's barrier. A wgmma group is the
        // warpgroup's, so its completion seen by one thread is its completion for all four warps.
        auto release = [&](int s) {
            if (kCluster > 1) {
                if (tid < kCluster) mbar_arrive_cluster(&sm.empty[s], uint32_t(tid));
            } else if (all_arrive || tid == 0) {
                mbar_arrive(&sm.empty[s]);
            }
        };
        int it = 0;
        for (int u = first_unit; u < units; u += unit_step) {
            int um, tn;
            unit_coords<kCluster>(u, units_m, tiles_n, um, tn);
            const int tm = um * kCluster + int(rank);
            float d[128];
#pragma unroll
            for (int i = 0; i < 128; ++i) d[i] = 0.f;
            for (int kt = 0; kt < ktiles; ++kt, ++it) {
                const int s = it % kStages;
                mbar_wait(&sm.full[s], uint32_t(it / kStages) & 1u);
                asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
                if (!(probe & 1)) {  // timing probe: no wgmma (the copies alone)
#pragma unroll
                    for (int kk = 0; kk < kBK / 16; ++kk)
                        wgmma_m64n256k16(d, smem_desc(&sm.a[s][cw * 64 * kBK + kk * 16]),
                                         smem_desc(&sm.b[s][kk * 16]));
                }
                asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
                if (kPipelined) {
                    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
                    if (kt > 0) release((it - 1) % kStages);
                } else {
                    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
                    release(s);
                }
            }
            if (kPipelined) {
                asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
                release((it - 1) % kStages);
            }

            // Accumulator layout (per warp: 16 rows): register 4j + 2h + e holds row 8h + lane/4,
            // column 8j + 2 (lane % 4) + e. A plain product (alpha only) is stored as float2 pairs;
            // anything more goes through store_pair, kept out of line. Inlined at all 64 sites, the
            // general epilogue (every activation's code) cost about 46 us a tile on an H200, more than
            // the tile's 64 K slices of wgmma at 4096^3 (timing probes, bit 5 below); out of line,
            // 4096^3 went from 280 to 709 TFLOP/s.
            const int64_t row0 = int64_t(tm) * kBM + cw * 64 + warp * 16 + lane / 4;
            const int64_t col0 = int64_t(tn) * kBN + 2 * (lane % 4);
#pragma unroll
            for (int j = 0; j < 32; ++j) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int64_t i = row0 + 8 * h, jj = col0 + 8 * j;
                    const float v0 = alpha * d[4 * j + 2 * h], v1 = alpha * d[4 * j + 2 * h + 1];
                    if (plain && i < m && jj + 1 < n)
                        *reinterpret_cast<float2*>(c + i * ldc + jj) = make_float2(v0, v1);
                    else if (i < m && jj < n)
                        store_pair(c, ldc, n, i, jj, v0, v1, beta, ep);
                }
            }
        }
    }
    // The peer may still arrive on this CTA's barriers: neither leaves before both are done.
    if (kCluster > 1) cluster_sync();
#endif  // KILN_SM90A
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// A 2-D bf16 tensor map over rows x cols (row stride ld elements), boxes of box_rows x 64.
kiln_status make_map(const char* fn, CUtensorMap* map, const void* base, int64_t rows, int64_t cols, int64_t ld,
                     uint32_t box_rows) {
    auto encode = encode_fn();
    if (encode == nullptr) return fail(KILN_ERR_UNSUPPORTED, "%s: the driver has no cuTensorMapEncodeTiled", fn);
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
    const cuuint32_t box[2] = {uint32_t(kBK), box_rows};
    const cuuint32_t unit[2] = {1, 1};
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides, box, unit,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return fail(KILN_ERR_INTERNAL, "%s: cuTensorMapEncodeTiled failed (%d)", fn, int(r));
    return KILN_OK;
}

// Whether this library holds sm_90a code for the kernel above: a build for plain sm_90 (an old
// CMAKE_CUDA_ARCHITECTURES in a build folder, say) would run it with an empty body and leave C
// unwritten. Asked once, by a one-thread kernel that only sm_90a code makes write 1.
__device__ int g_sm90a_built = 0;

__global__ void sm90a_probe_kernel() {
#ifdef KILN_SM90A
    g_sm90a_built = 1;
#endif
}

bool sm90a_code_present() {
    static const bool present = [] {
        sm90a_probe_kernel<<<1, 1>>>();
        int built = 0;
        if (cudaGetLastError() != cudaSuccess ||
            cudaMemcpyFromSymbol(&built, g_sm90a_built, sizeof built) != cudaSuccess) {
            cudaGetLastError();  // not sticky: a failed launch or copy only means "no"
            return false;
        }
        return built == 1;
    }();
    return present;
}

template <bool kPipelined, int kCluster>
cudaError_t launch_sm90(unsigned grid, const CUtensorMap& map_a, const CUtensorMap& map_b, int m, int n, int k,
                        float alpha, float beta, float* c, int64_t ldc, const Ep& ep, int all_arrive, int probe) {
    auto kernel = gemm_bf16_sm90_kernel<kPipelined, kCluster>;
    static const cudaError_t set = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                        int(kSmem90));
    if (set != cudaSuccess) return set;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(kThreads90);
    cfg.dynamicSmemBytes = kSmem90;
    cfg.stream = stream();
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = kCluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = kCluster > 1 ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, map_a, map_b, m, n, k, alpha, beta, c, ldc, ep, all_arrive, probe);
}

}  // namespace

bool gemm_bf16_sm90_fits(int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, const void* bt, int64_t ldbt) {
    auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
    return aligned(a) && aligned(bt) && lda % 8 == 0 && ldbt % 8 == 0 && m < (int64_t(1) << 31) &&
           n < (int64_t(1) << 31) && k < (int64_t(1) << 31) && encode_fn() != nullptr && sm90a_code_present();
}

kiln_status gemm_bf16_sm90(const char* fn, int64_t m, int64_t n, int64_t k, float alpha, const __nv_bfloat16* a,
                           int64_t lda, const __nv_bfloat16* bt, int64_t ldbt, float beta, float* c, int64_t ldc,
                           const Ep& ep) {
    static int sms = [] {
        int dev = 0, count = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) !=
                                                      cudaSuccess)
            return 0;
        return count;
    }();
    if (sms == 0) return fail(KILN_ERR_INTERNAL, "%s: cannot read the multiprocessor count", fn);
    // KILN_CUDA_SM90_VARIANT (benchmarks, tests): bit 0 pipelined wgmma, bit 1 persistent blocks,
    // bit 2 clusters of two with B multicast, bit 3 every consumer thread arrives (no cluster); timing
    // probes that leave a stage out (wrong results): bit 4 no wgmma, bit 5 no copies.
    int variant = 3;
    if (const char* v = std::getenv("KILN_CUDA_SM90_VARIANT")) variant = std::atoi(v) & 63;
    const int all = (variant >> 3) & 1, probe = (variant >> 4) & 3;
    const int cluster = (variant & 4) ? 2 : 1;
    CUtensorMap map_a, map_b;
    if (kiln_status st = make_map(fn, &map_a, a, m, k, lda, kBM)) return st;
    if (kiln_status st = make_map(fn, &map_b, bt, n, k, ldbt, uint32_t(kBN / cluster))) return st;
    const int64_t units = ((m + kBM * cluster - 1) / (kBM * cluster)) * ((n + kBN - 1) / kBN);
    if (units * cluster > 0x7fffffff) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: too many tiles", fn);
    const int64_t resident = sms / cluster;  // units one wave runs
    const unsigned grid = unsigned(((variant & 2) && units > resident ? resident : units) * cluster);
    const int mi = int(m), ni = int(n), ki = int(k);
    cudaError_t e;
    switch (variant & 5) {
        case 0: e = launch_sm90<false, 1>(grid, map_a, map_b, mi, ni, ki, alpha, beta, c, ldc, ep, all, probe); break;
        case 1: e = launch_sm90<true, 1>(grid, map_a, map_b, mi, ni, ki, alpha, beta, c, ldc, ep, all, probe); break;
        case 4: e = launch_sm90<false, 2>(grid, map_a, map_b, mi, ni, ki, alpha, beta, c, ldc, ep, 0, probe); break;
        default: e = launch_sm90<true, 2>(grid, map_a, map_b, mi, ni, ki, alpha, beta, c, ldc, ep, 0, probe); break;
    }
    if (e != cudaSuccess) return fail(KILN_ERR_INTERNAL, "%s: launch failed: %s", fn, cudaGetErrorString(e));
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

}  // namespace kiln_cuda
