/* FP8 experts' large groups (prefill) with FP8 activations on Hopper's warpgroup
 * MMA (sm_90a): the grouped rows quantized per 128 channels (fw_cuda_quant_act,
 * DeepSeek's act_quant) times the FP8 weights, both read by the tensor cores from
 * shared memory in e4m3 products, each 128-wide K block's sums promoted into fp32
 * by weight block scale x row scale (DeepGEMM's promotion). Warp-specialized as
 * DeepGEMM runs it, over units of 128 grouped rows: two plan tiles of one expert
 * (the CTA of a tile at an odd 64-row offset returns at once), so every weight
 * byte a CTA copies serves 128 rows.
 *
 * A CTA: 128 rows x 192 outputs in four warpgroups.
 * - The first produces: the tensor memory accelerator copies each stage's 192 x
 *   128 weight bytes (one box of a 3-D tensor map over the stacked experts,
 *   128-byte swizzled, rows past N zero-filled); its 128 threads copy the unit's
 *   gathered rows of X and their scales by cp.async, arriving on the stage's
 *   mbarrier as they land. It keeps 40 registers a thread (setmaxnreg).
 * - Three consume, 64 outputs each (one half of a scale block): both 64-row halves
 *   of X (A) times its weights (B) in m64n64k32 products, the stage handed back,
 *   then the promotion while the other warpgroups' products run. No barrier of
 *   the whole CTA inside the K loop.
 *
 * Measured (H100, DeepSeek-V3's experts at a 4096-token prefill, one launch
 * each, test_cuda_ops): gate / down 552 / 475 TFLOP/s, against 255 / 228 with
 * bf16 activations (moe_wgmma.cu) in the same run. The gate streams its weights
 * at 2.2 TB/s there (the copy ceiling: 3.0 TB/s read + write). */
#include "kernels/cuda/barrier.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/moe_tiles.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/wgmma.h"

#define F8_NC 3                        /* consumer warpgroups, 64 outputs each */
#define F8_BM (2 * MOE_BM)             /* grouped rows a unit */
#define F8_BN (64 * F8_NC)             /* outputs a CTA */
#define F8_BK 128                      /* K a stage: one scale block */
#define F8_THREADS (128 * (F8_NC + 1))
#define F8_X_BYTES (F8_BM * F8_BK)                  /* 16 KiB */
#define F8_W_BYTES (F8_BN * F8_BK)                  /* 24 KiB */
#define F8_STAGE (F8_X_BYTES + F8_W_BYTES + 1024)   /* + the rows' scales (512 bytes), keeping 1024 alignment */
#define F8_STAGES 5
#define F8_BARS (F8_STAGES * F8_STAGE)
#define F8_SMEM (F8_BARS + 2 * F8_STAGES * 8 + 1024) /* + full and empty mbarriers, + room to align */
#define F8_C_PITCH (2 * F8_BN + 16)                 /* the bf16 output tile's rows */
#define F8_BAR_OUT 1                                /* named barrier of the consumers */
static_assert(F8_STAGE % 1024 == 0 && F8_BM * F8_C_PITCH <= F8_BARS && F8_SMEM <= 227 * 1024, "moe_fp8 layout");

__global__ void __launch_bounds__(F8_THREADS, 1)
moe_fp8_kernel(const __grid_constant__ CUtensorMap tw, bf16 *__restrict__ y, const uint8_t *__restrict__ xq,
               const float *__restrict__ xs, int64_t M, bool gather, int k, const float *__restrict__ wscale,
               int64_t scale_ld, int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
#if FW_HAVE_WGMMA
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const int e = pl.tiles[2 * blockIdx.y], off = pl.tiles[2 * blockIdx.y + 1];
    if (off & MOE_BM) return; /* the unit of the tile before covers this one */
    const int rbeg = pl.offsets[e] + off, cnt = min(F8_BM, pl.offsets[e + 1] - rbeg);
    const int n0 = (int)blockIdx.x * F8_BN;
    extern __shared__ __align__(128) uint8_t f8_smem[];
    const uint32_t raw = fw_smem_addr(f8_smem), pad = (1024 - (raw & 1023)) & 1023;
    uint8_t *sm = f8_smem + pad;
    const uint32_t sbase = raw + pad, full = sbase + F8_BARS, empty = full + 8 * F8_STAGES;
    const int tid = threadIdx.x, wt = tid & 127;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0); /* warp-uniform, as the compiler sees it */
    const int nk = (int)(K / F8_BK);
    if (tid == 0)
        for (int s = 0; s < F8_STAGES; s++) {
            fw_mbar_init(full + 8 * s, 128 + 1);  /* the producers' cp.async arrivals + the weights' byte count */
            fw_mbar_init(empty + 8 * s, 4 * F8_NC); /* each consumer warp */
        }
    __syncthreads();

    if (wg == 0) {
        fw_wgmma_regs_dec<40>();
        /* X: chunk c of rows r0 + 16 i at chunk c ^ (row % 8); thread wt copies row wt's
         * scale (0 bytes past the unit: zero fill). Rows past the unit are not copied:
         * their products are never stored. */
        const int c = wt & 7, r0 = wt >> 3;
        const uint32_t sw = (uint32_t)((c ^ (r0 & 7)) << 4);
        const uint8_t *src[F8_BM / 16];
#pragma unroll
        for (int i = 0; i < F8_BM / 16; i++) {
            const int r = r0 + 16 * i;
            src[i] = r < cnt ? xq + (int64_t)moe_x_index(pl.rows, gather, k, rbeg + r) * K + 16 * c : nullptr;
        }
        const int srow = wt < cnt ? moe_x_index(pl.rows, gather, k, rbeg + wt) : -1;
        for (int kb = 0; kb < nk; kb++) {
            const int s = kb % F8_STAGES;
            const uint32_t s0 = sbase + s * F8_STAGE, bar = full + 8 * s;
            fw_mbar_wait(empty + 8 * s, (uint32_t)((kb / F8_STAGES) & 1) ^ 1); /* the first round passes */
            fw_mbar_expect_tx(wt == 0, bar, F8_W_BYTES);
            fw_tma_load_3d(wt == 0, s0 + F8_X_BYTES, &tw, bar, kb * F8_BK, n0, e);
#pragma unroll
            for (int i = 0; i < F8_BM / 16; i++)
                if (src[i]) fw_cp_async16_at(s0 + (r0 + 16 * i) * 128 + sw, src[i] + (int64_t)kb * F8_BK, 16);
            fw_cp_async4_at(s0 + F8_X_BYTES + F8_W_BYTES + 4 * wt, xs + (int64_t)kb * M + (srow < 0 ? 0 : srow),
                            srow < 0 ? 0 : 4);
            fw_mbar_arrive_cp_async(bar);
        }
        fw_cp_async_wait<0>();
        return;
    }
    fw_wgmma_regs_inc<152>();

    const int ci = wg - 1, warp = wt >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const bool two = __shfl_sync(0xffffffffu, cnt > MOE_BM ? 1 : 0, 0); /* the second 64-row half has rows */
    const int nc0 = n0 + 64 * ci;                                       /* this warpgroup's first output */
    const bool n_in = nc0 < N;                                          /* else its weights are zeros */
    const float *wsc = wscale + (int64_t)e * sstride + (int64_t)(n_in ? nc0 >> 7 : 0) * scale_ld;
    float acc[2][32], part[2][32]; /* [row half][m64n64 accumulator] */
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[h][i] = 0.0f;
    for (int kb = 0; kb < nk; kb++) {
        const int s = kb % F8_STAGES;
        const float sc = n_in ? __ldg(wsc + kb) : 0.0f;
        const uint32_t xs0 = sbase + s * F8_STAGE, ws0 = xs0 + F8_X_BYTES + ci * 64 * 128;
        fw_mbar_wait(full + 8 * s, (uint32_t)(kb / F8_STAGES) & 1);
        fw_wgmma_fence_smem(); /* X came by cp.async (the generic proxy); the products read it */
        fw_wgmma_fence();
#pragma unroll
        for (int j = 0; j < F8_BK / 32; j++) {
            const uint64_t db = fw_wgmma_desc(ws0 + 32 * j);
            fw_wgmma_m64n64k32_e4m3_ss(part[0], fw_wgmma_desc(xs0 + 32 * j), db, j > 0);
            if (two) fw_wgmma_m64n64k32_e4m3_ss(part[1], fw_wgmma_desc(xs0 + MOE_BM * 128 + 32 * j), db, j > 0);
        }
        fw_wgmma_commit();
        /* This thread's rows' scales (16 warp + g, + 8, in each half) while the products run. */
        const float *rs = (const float *)(sm + s * F8_STAGE + F8_X_BYTES + F8_W_BYTES);
        float sr[2][2];
#pragma unroll
        for (int h = 0; h < 2; h++)
            sr[h][0] = sc * rs[64 * h + 16 * warp + g], sr[h][1] = sc * rs[64 * h + 16 * warp + g + 8];
        fw_wgmma_wait<0>();
        __syncwarp();
        if (lane == 0) fw_mbar_arrive(empty + 8 * s);
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int i = 0; i < 32; i++) {
                fw_wgmma_pin(part[h][i]);
                acc[h][i] = fmaf(sr[h][(i >> 1) & 1], part[h][i], acc[h][i]);
            }
    }
    /* Every consumer is past its last stage, and every copy was consumed: the ring holds the output tile. */
    fw_bar_sync(F8_BAR_OUT, 128 * F8_NC);
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int col = 64 * ci + 8 * i + 2 * t, r = 64 * h + 16 * warp + g;
            *(__nv_bfloat162 *)(sm + r * F8_C_PITCH + 2 * col) = __floats2bfloat162_rn(acc[h][4 * i], acc[h][4 * i + 1]);
            *(__nv_bfloat162 *)(sm + (r + 8) * F8_C_PITCH + 2 * col) =
                __floats2bfloat162_rn(acc[h][4 * i + 2], acc[h][4 * i + 3]);
        }
    fw_bar_sync(F8_BAR_OUT, 128 * F8_NC);
    moe_tile_store<F8_BN, 128 * F8_NC, F8_BM>(y, sm, F8_C_PITCH, rbeg, cnt, n0, N, y_vec, swiglu, tid - 128);
#else
    __trap(); /* built without sm_90a code: the host never launches this */
#endif
}

/* The tensor map of the stacked experts' FP8 weights w (K x N x n_exp bytes, rows
 * w.ld apart, experts wstride apart): boxes of 128 K x F8_BN rows, 128-byte swizzle. */
static bool moe_fp8_weight_map(CUtensorMap *tm, const fw_wview &w, int64_t wstride, int64_t N, int64_t K,
                               int64_t n_exp) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = fw_tma_encoder();
    const cuuint64_t dims[3] = {(cuuint64_t)K, (cuuint64_t)N, (cuuint64_t)n_exp};
    const cuuint64_t strides[2] = {(cuuint64_t)w.ld, (cuuint64_t)wstride};
    const cuuint32_t box[3] = {F8_BK, F8_BN, 1}, estr[3] = {1, 1, 1};
    return enc && enc(tm, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, (void *)w.data, dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool moe_fp8_available(void) { return fw_tma_encoder() != nullptr; }

cudaError_t moe_fp8_launch(bf16 *y, const uint8_t *xq, const float *xs, int64_t M, bool gather, int k, const fw_wview &w,
                           const fw_wview *wu, int64_t wstride, int64_t sstride, int64_t N, int64_t K,
                           const fw_cuda_moe_plan &pl, cudaStream_t st) {
    const bool y_vec = N % 8 == 0 && fw_ptr_align(y) >= 16;
    cudaError_t err = cudaFuncSetAttribute(moe_fp8_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, F8_SMEM);
    if (err != cudaSuccess) return err;
    dim3 grid((unsigned)fw_ceil_div(N, F8_BN), (unsigned)pl.tile_cap);
    for (int p = 0; p < (wu ? 2 : 1); p++) {
        const fw_wview &wp = p ? *wu : w;
        CUtensorMap tm;
        if (!moe_fp8_weight_map(&tm, wp, wstride, N, K, pl.n_exp)) return cudaErrorInvalidValue;
        moe_fp8_kernel<<<grid, F8_THREADS, F8_SMEM, st>>>(tm, y, xq, xs, M, gather, k, wp.scale, wp.scale_ld, sstride, N,
                                                          K, pl, y_vec, p == 1);
    }
    return cudaGetLastError();
}
