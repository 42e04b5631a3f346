/* Tensor parallelism on GPUs over NCCL: the all-reduce of the row-parallel
 * projections' partial sums, in bf16, on a communication stream of its own,
 * ordered with the compute stream by events. A peer that never joins a
 * collective would leave the GPU waiting for ever; fw_gpu_comm_wait polls the
 * stream with ncclCommGetAsyncError and, past --collective-timeout seconds
 * (default 300), aborts the communicator and fails with a message, so the job
 * ends instead of hanging. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/base/clock.h"
#include "runtime/cuda/gpu_model.h"

#ifdef FW_HAVE_NCCL
#include <nccl.h>

struct fw_gpu_comm {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t ready, done;
    int rank, size;
    double timeout_s;
    bool aborted;
};

int fw_gpu_comm_init(fw_gpu_model *g, MPI_Comm tp_comm, fw_err *e) {
    fw_gpu_comm *c = calloc(1, sizeof *c);
    if (!c) return fw_errf(e, "out of memory");
    g->comm = c;
    MPI_Comm_rank(tp_comm, &c->rank);
    MPI_Comm_size(tp_comm, &c->size);
    c->timeout_s = g->collective_timeout > 0 ? g->collective_timeout : 300.0;
    ncclUniqueId id;
    ncclResult_t r = ncclSuccess;
    if (c->rank == 0) r = ncclGetUniqueId(&id);
    int ok = r == ncclSuccess;
    MPI_Bcast(&ok, 1, MPI_INT, 0, tp_comm);
    if (!ok) return fw_errf(e, "NCCL: no unique id on the group's rank 0: %s", ncclGetErrorString(r));
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, tp_comm);
    if (cudaSetDevice(g->ctx.device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming) != cudaSuccess)
        return fw_errf(e, "GPU %d: cannot create the communication stream", g->ctx.device);
    r = ncclCommInitRank(&c->comm, c->size, id, c->rank);
    if (r != ncclSuccess) {
        c->comm = NULL;
        return fw_errf(e, "NCCL: joining the tensor-parallel group (rank %d of %d) failed: %s", c->rank, c->size,
                       ncclGetErrorString(r));
    }
    MPI_Barrier(tp_comm);
    return FW_OK;
}

int fw_gpu_allreduce(fw_gpu_model *g, fw_bf16 *buf, int64_t n, fw_err *e) {
    fw_gpu_comm *c = g->comm;
    if (c->aborted) return fw_errf(e, "NCCL: the communicator was aborted");
    if (cudaEventRecord(c->ready, g->ctx.stream) != cudaSuccess || cudaStreamWaitEvent(c->stream, c->ready, 0) != cudaSuccess)
        return fw_errf(e, "GPU %d: ordering the all-reduce failed", g->ctx.device);
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)n, ncclBfloat16, ncclSum, c->comm, c->stream);
    if (r != ncclSuccess) return fw_errf(e, "NCCL all-reduce of %lld values failed: %s", (long long)n, ncclGetErrorString(r));
    if (cudaEventRecord(c->done, c->stream) != cudaSuccess || cudaStreamWaitEvent(g->ctx.stream, c->done, 0) != cudaSuccess)
        return fw_errf(e, "GPU %d: ordering after the all-reduce failed", g->ctx.device);
    return FW_OK;
}

int fw_gpu_comm_wait(fw_gpu_model *g, fw_err *e) {
    fw_gpu_comm *c = g->comm;
    cudaEvent_t ev;
    if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess || cudaEventRecord(ev, g->ctx.stream) != cudaSuccess)
        return fw_errf(e, "GPU %d: cannot record an event", g->ctx.device);
    double t0 = fw_now();
    int rc = FW_OK;
    for (;;) {
        cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady) {
            rc = fw_errf(e, "GPU %d: %s", g->ctx.device, cudaGetErrorString(q));
            break;
        }
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(c->comm, &async);
        if (async != ncclSuccess || fw_now() - t0 > c->timeout_s) {
            ncclCommAbort(c->comm);
            c->aborted = true;
            rc = async != ncclSuccess
                     ? fw_errf(e, "NCCL: the tensor-parallel group failed (%s); communicator aborted",
                               ncclGetErrorString(async))
                     : fw_errf(e, "NCCL: a collective of the tensor-parallel group (rank %d of %d) did not finish "
                                  "within %.0f s (--collective-timeout); communicator aborted",
                               c->rank, c->size, c->timeout_s);
            break;
        }
        usleep(20);
    }
    cudaEventDestroy(ev);
    return rc;
}

void fw_gpu_comm_free(fw_gpu_model *g) {
    fw_gpu_comm *c = g->comm;
    if (!c) return;
    if (c->comm && !c->aborted) ncclCommDestroy(c->comm);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->ready) cudaEventDestroy(c->ready);
    if (c->done) cudaEventDestroy(c->done);
    free(c);
    g->comm = NULL;
}

#else /* no NCCL: tensor parallelism on GPUs is refused at start */

int fw_gpu_comm_init(fw_gpu_model *g, MPI_Comm tp_comm, fw_err *e) {
    (void)g, (void)tp_comm;
    return fw_errf(e, "tensor parallelism on GPUs needs NCCL; this furrow-cuda was built without it (--with-nccl)");
}
int fw_gpu_allreduce(fw_gpu_model *g, fw_bf16 *buf, int64_t n, fw_err *e) {
    (void)g, (void)buf, (void)n;
    return fw_errf(e, "no NCCL");
}
int fw_gpu_comm_wait(fw_gpu_model *g, fw_err *e) {
    (void)g;
    return fw_errf(e, "no NCCL");
}
void fw_gpu_comm_free(fw_gpu_model *g) { (void)g; }
#endif
