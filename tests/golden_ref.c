#include "tests/golden_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void *read_ds(hid_t file, const char *path, hid_t mem_type, size_t elem, int64_t *dims, int *ndim) {
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    hsize_t d[2] = {1, 1};
    *ndim = H5Sget_simple_extent_dims(sp, d, NULL);
    dims[0] = (int64_t)d[0];
    dims[1] = *ndim > 1 ? (int64_t)d[1] : 1;
    void *buf = malloc((size_t)(dims[0] * dims[1]) * elem);
    if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return buf;
}

/* A 1-D int64 dataset of token ids as int32, its length in *n. */
static int32_t *read_ids(hid_t f, const char *path, int64_t *n) {
    int64_t dims[2];
    int nd;
    int64_t *t64 = read_ds(f, path, H5T_NATIVE_INT64, 8, dims, &nd);
    if (!t64) return NULL;
    int32_t *ids = malloc((size_t)dims[0] * sizeof *ids);
    for (int64_t k = 0; ids && k < dims[0]; k++) ids[k] = (int32_t)t64[k];
    free(t64);
    *n = dims[0];
    return ids;
}

int load_prompt(hid_t f, int i, prompt *p) {
    char path[128];
    int64_t dims[2];
    int nd;
    snprintf(path, sizeof path, "/prompts/%d/tokens", i);
    if (!(p->tokens = read_ids(f, path, &p->n_tok))) return -1;
    snprintf(path, sizeof path, "/prompts/%d/greedy_tokens", i);
    if (!(p->greedy = read_ids(f, path, &p->n_greedy))) return -1;
    snprintf(path, sizeof path, "/prompts/%d/logits", i);
    if (!(p->logits = read_ds(f, path, H5T_NATIVE_FLOAT, 4, dims, &nd))) return -1;
    p->V = dims[1];
    snprintf(path, sizeof path, "/prompts/%d/greedy_logits", i);
    if (!(p->greedy_logits = read_ds(f, path, H5T_NATIVE_FLOAT, 4, dims, &nd))) return -1;
    snprintf(path, sizeof path, "/prompts/%d/greedy_margin", i);
    if (!(p->margin = read_ds(f, path, H5T_NATIVE_FLOAT, 4, dims, &nd))) return -1;
    return 0;
}

void free_prompt(prompt *p) {
    free(p->tokens);
    free(p->greedy);
    free(p->logits);
    free(p->greedy_logits);
    free(p->margin);
}

double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}


int has_prompt(hid_t f, int i) {
    char path[64];
    snprintf(path, sizeof path, "/prompts/%d", i);
    return H5Lexists(f, "/prompts", H5P_DEFAULT) > 0 && H5Lexists(f, path, H5P_DEFAULT) > 0;
}
