/* furrow-cuda: furrow with the CUDA backend linked in (`--device cuda`). Plain
 * furrow hands such commands to it, so users type `furrow ... --device cuda`. */
#include "runtime/cli/cli.h"
#include "runtime/cuda/gpu_backend.h"

int main(int argc, char **argv) {
    fw_backend_register(fw_cuda_backend());
    return fw_main(argc, argv);
}
