/* `furrow convert --quantize` (private to io/convert.c): one linear weight of a
 * BF16, F32 or FP8 Hugging Face checkpoint widened to float32 (FP8 times its
 * 128x128 block scale_inv, as the loader's kernels compute it), quantized by
 * io/quantize.h and written as INT4 or INT8; and the summary of all of them. */
#ifndef FW_IO_CONVERT_QUANT_H
#define FW_IO_CONVERT_QUANT_H

#include "io/checkpoint.h"
#include "io/convert.h"
#include "io/model_tensors.h"
#include "io/quant_spec.h"
#include "io/safetensors.h"

/* Every weight's relative error, for the summary's median. */
typedef struct fw_cq_acc {
    double *rel;                /* [cap] */
    int64_t n, cap;
    fw_quant_summary sum;
} fw_cq_acc;

/* Whether q can store model tensor m ([out, in]): FW_ERR naming it and the group
 * when the group does not divide its columns. */
int fw_cq_check(const fw_quant_spec *q, const fw_model_tensor *m, fw_err *e);

/* Quantizes weight t (with scale_inv for FP8, else NULL) and writes it; adds its
 * error and sizes to acc. `src` names the input for messages. */
int fw_cq_write(fw_ckpt_writer *w, const fw_quant_spec *q, const fw_model_tensor *m, const fw_st_tensor *t,
                const fw_st_tensor *scale_inv, const char *src, fw_cq_acc *acc, fw_err *e);

/* Fills acc->sum's error statistics (min, median, max) and frees acc->rel. */
void fw_cq_finish(fw_cq_acc *acc);

#endif
