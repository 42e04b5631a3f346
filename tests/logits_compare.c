/* Compares two `furrow logits` files row by row (one row per position): the
 * relative error max |a - b| / max |b| of each row; at least SHARE of the rows
 * within TOL and none beyond MAX. For GPU layouts, whose bf16 sums differ in
 * order from one GPU's and so may flip a routing near-tie (shared/golden/README.md).
 * usage: logits_compare A.h5 B.h5 TOL SHARE MAX
 *
 * --gap: whether two tokens nearly tie at the last position of a file:
 * |logit[A] - logit[B]| / max |logit| below TOL. A GPU run whose tokens part
 * from another's where the two choices nearly tie may do so from the summation
 * order alone (a batch or a verify step of other shape); elsewhere it is a bug.
 * usage: logits_compare --gap FILE.h5 A B TOL   (exit 0: a near-tie, 1: a clear choice, 2: bad input) */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *read_logits(const char *path, hsize_t dims[2]) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t d = H5Dopen2(f, "logits", H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    float *v = NULL;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        v = malloc((size_t)(dims[0] * dims[1]) * sizeof(float));
        if (v && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) free(v), v = NULL;
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    return v;
}

static int gap(char **argv) {
    hsize_t dims[2] = {0, 0};
    float *v = read_logits(argv[2], dims);
    const long a = atol(argv[3]), b = atol(argv[4]);
    if (!v || dims[0] == 0 || a < 0 || b < 0 || (hsize_t)a >= dims[1] || (hsize_t)b >= dims[1]) {
        fprintf(stderr, "logits_compare --gap: cannot read %s, or token %ld or %ld is outside its vocabulary\n",
                argv[2], a, b);
        free(v);
        return 2;
    }
    const float *row = v + (dims[0] - 1) * dims[1];
    double m = 0;
    hsize_t best = 0;
    for (hsize_t c = 0; c < dims[1]; c++) {
        m = fmax(m, fabs((double)row[c]));
        if (row[c] > row[best]) best = c;
    }
    const double g = fabs((double)row[a] - row[b]) / (m > 0 ? m : 1);
    printf("logit[%ld] %.6g, logit[%ld] %.6g, max |logit| %.6g, argmax %llu: gap %.3g of max |logit| (near-tie below %s)\n",
           a, row[a], b, row[b], m, (unsigned long long)best, g, argv[5]);
    free(v);
    return g < atof(argv[5]) ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "--gap")) return gap(argv);
    if (argc != 6) {
        fprintf(stderr, "usage: logits_compare A.h5 B.h5 TOL SHARE MAX\n");
        return 2;
    }
    hsize_t da[2], db[2];
    float *a = read_logits(argv[1], da), *b = read_logits(argv[2], db);
    if (!a || !b || da[0] != db[0] || da[1] != db[1]) {
        fprintf(stderr, "logits_compare: cannot read both files, or their shapes differ\n");
        return 1;
    }
    const double tol = atof(argv[3]), share = atof(argv[4]), most = atof(argv[5]);
    int64_t within = 0;
    double worst = 0;
    for (hsize_t r = 0; r < da[0]; r++) {
        double d = 0, m = 0;
        for (hsize_t c = 0; c < da[1]; c++) {
            double x = a[r * da[1] + c], y = b[r * da[1] + c];
            d = isfinite(x) ? fmax(d, fabs(x - y)) : INFINITY;
            m = fmax(m, fabs(y));
        }
        double rel = d / (m > 0 ? m : 1);
        within += rel < tol;
        worst = fmax(worst, rel);
    }
    double got = (double)within / (double)da[0];
    printf("%llu rows: %.1f%% within %.3g, worst %.3g\n", (unsigned long long)da[0], 100 * got, tol, worst);
    free(a), free(b);
    return got >= share && worst < most ? 0 : 1;
}
