/* The CUDA context (device, stream, cuBLASLt handle and workspace, scratch), its
 * error reporting, device memory helpers and weight upload. */
#include "kernels/cuda/cuda_common.h"

#include <stdlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* cuBLASLt's recommended workspace on Hopper. */
#define FW_LT_WORKSPACE (32u << 20)

int fw_cuda_fail(fw_cuda_ctx *ctx, const char *file, int line, const char *what, const char *msg) {
    if (ctx) snprintf(ctx->err, sizeof ctx->err, "%s:%d: %s: %s", file, line, what, msg ? msg : "(no message)");
    return FW_CUDA_ERR;
}

int fw_cuda_errf(fw_cuda_ctx *ctx, const char *fmt, ...) {
    if (!ctx) return FW_CUDA_ERR;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return FW_CUDA_ERR;
}

extern "C" int fw_cuda_device_count(int *n) {
    *n = 0;
    int c = 0;
    /* No driver, no device: not an error here, the caller decides (tests skip). */
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
        (void)cudaGetLastError();
        return FW_CUDA_OK;
    }
    *n = c;
    return FW_CUDA_OK;
}

static int ctx_init(fw_cuda_ctx *ctx, int device, cudaStream_t stream) {
    ctx->device = device;
    FW_CUDA_CHECK(ctx, cudaSetDevice(device));
    cudaDeviceProp prop;
    FW_CUDA_CHECK(ctx, cudaGetDeviceProperties(&prop, device));
    ctx->cc_major = prop.major;
    ctx->cc_minor = prop.minor;
    snprintf(ctx->device_name, sizeof ctx->device_name, "%s", prop.name);
    if (stream) {
        ctx->stream = stream;
    } else {
        FW_CUDA_CHECK(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
        ctx->own_stream = true;
    }
    FW_CUDA_CHECK(ctx, cublasLtCreate(&ctx->lt));
    FW_CUDA_CHECK(ctx, cudaMalloc(&ctx->lt_ws, FW_LT_WORKSPACE));
    ctx->lt_ws_bytes = FW_LT_WORKSPACE;
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_ctx_init(fw_cuda_ctx *ctx, int device, cudaStream_t stream) {
    memset(ctx, 0, sizeof *ctx);
    ctx->opt.fp8_gemv_rows = FW_CUDA_FP8_GEMV_ROWS;
    ctx->opt.moe_act_fp8 = true;
    if (ctx_init(ctx, device, stream) == FW_CUDA_OK) return FW_CUDA_OK;
    char msg[sizeof ctx->err];
    memcpy(msg, ctx->err, sizeof msg);
    fw_cuda_ctx_free(ctx); /* what was made before the failure */
    memcpy(ctx->err, msg, sizeof msg);
    return FW_CUDA_ERR;
}

extern "C" void fw_cuda_ctx_free(fw_cuda_ctx *ctx) {
    if (!ctx) return;
    if (ctx->stream) (void)cudaStreamSynchronize(ctx->stream);
    if (ctx->plans) ctx->plans_free(ctx->plans);
    ctx->plans = NULL;
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    cudaFree(ctx->lt_ws);
    cudaFree(ctx->scratch);
    if (ctx->own_stream && ctx->stream) cudaStreamDestroy(ctx->stream);
    ctx->lt = NULL;
    ctx->lt_ws = ctx->scratch = NULL;
    ctx->stream = NULL;
    ctx->scratch_bytes = ctx->lt_ws_bytes = 0;
}

extern "C" int fw_cuda_ctx_reserve(fw_cuda_ctx *ctx, size_t bytes) {
    if (bytes <= ctx->scratch_bytes) return FW_CUDA_OK;
    cudaStreamCaptureStatus cap;
    FW_CUDA_CHECK(ctx, cudaStreamIsCapturing(ctx->stream, &cap));
    if (cap != cudaStreamCaptureStatusNone)
        return fw_cuda_errf(ctx, "fw_cuda scratch: %zu bytes needed (have %zu) during graph capture; "
                                 "call fw_cuda_ctx_reserve before capturing", bytes, ctx->scratch_bytes);
    /* Queued work may still use the old area. */
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    FW_CUDA_CHECK(ctx, cudaFree(ctx->scratch));
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    size_t want = bytes + bytes / 4; /* room to grow a little without reallocating */
    FW_CUDA_CHECK(ctx, cudaMalloc(&ctx->scratch, want));
    ctx->scratch_bytes = want;
    return FW_CUDA_OK;
}

int fw_cuda_scratch(fw_cuda_ctx *ctx, size_t bytes, void **p) {
    if (fw_cuda_ctx_reserve(ctx, bytes)) return FW_CUDA_ERR;
    *p = ctx->scratch;
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_sync(fw_cuda_ctx *ctx) {
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    FW_CUDA_CHECK(ctx, cudaGetLastError());
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_malloc(fw_cuda_ctx *ctx, void **p, size_t bytes) {
    *p = NULL;
    FW_CUDA_CHECK(ctx, cudaMalloc(p, bytes ? bytes : 1));
    return FW_CUDA_OK;
}

extern "C" void fw_cuda_free(void *p) { cudaFree(p); }

extern "C" int fw_cuda_upload(fw_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
    FW_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_upload2d(fw_cuda_ctx *ctx, void *dst, size_t dpitch, const void *src, size_t spitch,
                                size_t width, size_t height) {
    if (width == 0 || height == 0) return FW_CUDA_OK;
    FW_CUDA_CHECK(ctx, cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyHostToDevice, ctx->stream));
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_download(fw_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
    FW_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    return FW_CUDA_OK;
}

/* INT4: the words that hold columns c0 .. c0 + cols - 1 of each row, rows padded
 * to 16 bytes, and each row's group scales (bf16) for those columns; c0 kept. */
static int int4_upload(fw_cuda_ctx *ctx, fw_cuda_weight *dw, const fw_weight *hw) {
    if (!hw->gscale || hw->group < 8 || hw->group % 8 || hw->c0 < 0)
        return fw_cuda_errf(ctx, "fw_cuda_weight_upload: INT4 weight without group scales, or with group %lld",
                            (long long)hw->group);
    const int64_t words = (hw->c0 + hw->cols + 7) / 8, ld = fw_round_up(words > 0 ? words : 1, 4);
    const int64_t groups = (hw->c0 + hw->cols + hw->group - 1) / hw->group;
    if (hw->ld < words) return fw_cuda_errf(ctx, "fw_cuda_weight_upload: INT4 ld %lld < %lld words", (long long)hw->ld, (long long)words);
    const size_t bytes = (size_t)(hw->rows * ld) * 4, sbytes = (size_t)(hw->rows * groups) * 2;
    FW_CUDA_CHECK(ctx, cudaMalloc(&dw->data_alloc, bytes ? bytes : 1));
    FW_CUDA_CHECK(ctx, cudaMalloc(&dw->scale_alloc, sbytes ? sbytes : 1));
    dw->w = *hw;
    dw->w.data = dw->data_alloc;
    dw->w.ld = ld;
    dw->w.gscale = (const uint16_t *)dw->scale_alloc;
    dw->w.scale_ld = groups;
    FW_CUDA_CHECK(ctx, cudaMemsetAsync(dw->data_alloc, 0, bytes ? bytes : 1, ctx->stream));
    if (hw->rows > 0 && hw->cols > 0) {
        FW_CUDA_CHECK(ctx, cudaMemcpy2DAsync(dw->data_alloc, (size_t)ld * 4, hw->data, (size_t)hw->ld * 4, (size_t)words * 4,
                                             (size_t)hw->rows, cudaMemcpyHostToDevice, ctx->stream));
        FW_CUDA_CHECK(ctx, cudaMemcpy2DAsync(dw->scale_alloc, (size_t)groups * 2, hw->gscale, (size_t)hw->scale_ld * 2,
                                             (size_t)groups * 2, (size_t)hw->rows, cudaMemcpyHostToDevice, ctx->stream));
    }
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)); /* the host buffers may go now */
    return FW_CUDA_OK;
}

static int weight_upload(fw_cuda_ctx *ctx, fw_cuda_weight *dw, const fw_weight *hw, int64_t ld) {
    if (hw->type == FW_WTYPE_INT4) return int4_upload(ctx, dw, hw);
    if (hw->type != FW_WTYPE_F32 && hw->type != FW_WTYPE_BF16 && hw->type != FW_WTYPE_FP8)
        return fw_cuda_errf(ctx, "fw_cuda_weight_upload: unknown weight type %d", (int)hw->type);
    if (hw->rows < 0 || hw->cols < 0 || hw->ld < hw->cols)
        return fw_cuda_errf(ctx, "fw_cuda_weight_upload: bad shape [%lld x %lld] ld %lld", (long long)hw->rows,
                            (long long)hw->cols, (long long)hw->ld);
    if (ld == 0) ld = fw_round_up(hw->cols > 0 ? hw->cols : 1, 16);
    if (ld < hw->cols) return fw_cuda_errf(ctx, "fw_cuda_weight_upload: ld %lld < cols %lld", (long long)ld, (long long)hw->cols);
    size_t es = fw_wtype_size(hw->type);
    size_t bytes = (size_t)(hw->rows * ld) * es;
    void *data = NULL;
    FW_CUDA_CHECK(ctx, cudaMalloc(&data, bytes ? bytes : 1));
    dw->data_alloc = data;
    dw->w = *hw;
    dw->w.data = data;
    dw->w.ld = ld;
    dw->w.scale = NULL;
    dw->w.scale_ld = 0;
    dw->w.r0 = dw->w.c0 = 0;
    FW_CUDA_CHECK(ctx, cudaMemsetAsync(data, 0, bytes ? bytes : 1, ctx->stream)); /* the ld padding */
    if (hw->rows > 0 && hw->cols > 0)
        FW_CUDA_CHECK(ctx, cudaMemcpy2DAsync(data, (size_t)ld * es, hw->data, (size_t)hw->ld * es, (size_t)hw->cols * es,
                                             (size_t)hw->rows, cudaMemcpyHostToDevice, ctx->stream));
    if (hw->type == FW_WTYPE_FP8 && hw->rows > 0 && hw->cols > 0) {
        if (!hw->scale) return fw_cuda_errf(ctx, "fw_cuda_weight_upload: FP8 weight without scales");
        /* The scale blocks that cover the view; rows and columns padded to multiples
         * of 4 (cuBLASLt reads the padding), zero-filled. */
        int64_t rb0 = hw->r0 / FW_FP8_BLOCK, rb1 = (hw->r0 + hw->rows - 1) / FW_FP8_BLOCK;
        int64_t cb0 = hw->c0 / FW_FP8_BLOCK, cb1 = (hw->c0 + hw->cols - 1) / FW_FP8_BLOCK;
        int64_t nrb = rb1 - rb0 + 1, ncb = cb1 - cb0 + 1;
        int64_t sld = fw_round_up(ncb, 4), srows = fw_round_up(nrb, 4);
        float *sc = NULL;
        FW_CUDA_CHECK(ctx, cudaMalloc(&sc, (size_t)(srows * sld) * sizeof(float)));
        dw->scale_alloc = sc;
        FW_CUDA_CHECK(ctx, cudaMemsetAsync(sc, 0, (size_t)(srows * sld) * sizeof(float), ctx->stream));
        FW_CUDA_CHECK(ctx, cudaMemcpy2DAsync(sc, (size_t)sld * sizeof(float), hw->scale + rb0 * hw->scale_ld + cb0,
                                             (size_t)hw->scale_ld * sizeof(float), (size_t)ncb * sizeof(float),
                                             (size_t)nrb, cudaMemcpyHostToDevice, ctx->stream));
        dw->w.scale = sc;
        dw->w.scale_ld = sld;
        dw->w.r0 = hw->r0 % FW_FP8_BLOCK;
        dw->w.c0 = hw->c0 % FW_FP8_BLOCK;
    }
    FW_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)); /* the host buffers may go now */
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_weight_upload(fw_cuda_ctx *ctx, fw_cuda_weight *dw, const fw_weight *hw, int64_t ld) {
    memset(dw, 0, sizeof *dw);
    if (weight_upload(ctx, dw, hw, ld) == FW_CUDA_OK) return FW_CUDA_OK;
    fw_cuda_weight_free(dw);
    return FW_CUDA_ERR;
}

extern "C" void fw_cuda_weight_free(fw_cuda_weight *dw) {
    if (!dw) return;
    cudaFree(dw->data_alloc);
    cudaFree(dw->scale_alloc);
    memset(dw, 0, sizeof *dw);
}

/* The driver's tensor-map encoder, found once through the runtime (no link to libcuda). */
PFN_cuTensorMapEncodeTiled_v12000 fw_tma_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    static bool tried = false;
    if (!tried) {
        tried = true;
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}
