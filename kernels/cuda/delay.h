/* A wait on the stream (kernels/cuda/delay.cu). */
#ifndef FW_KERNELS_CUDA_DELAY_H
#define FW_KERNELS_CUDA_DELAY_H

#include "kernels/cuda/ops_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Holds ctx's stream for `us` microseconds: a stand-in for a collective that is
 * not there (furrow bench --tp-sim). Nothing for us <= 0. */
int fw_cuda_delay(fw_cuda_ctx *ctx, double us);

#ifdef __cplusplus
}
#endif

#endif
