/* The CUDA backend's entry, for the furrow-cuda binary to register. */
#ifndef FW_RUNTIME_CUDA_GPU_BACKEND_H
#define FW_RUNTIME_CUDA_GPU_BACKEND_H

#include "runtime/model/backend.h"

const fw_backend *fw_cuda_backend(void);

#endif
