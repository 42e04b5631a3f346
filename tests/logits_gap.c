/* Whether two tokens nearly tie at the last position of a `furrow logits` file:
 * |logit[A] - logit[B]| / max |logit| below TOL. A GPU run whose tokens part
 * from another's where the two choices nearly tie may do so from the summation
 * order alone (a batch or a verify step of other shape); elsewhere it is a bug.
 * usage: logits_gap FILE.h5 A B TOL   (exit 0: a near-tie, 1: a clear choice, 2: bad input) */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: logits_gap FILE.h5 A B TOL\n");
        return 2;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, "logits", H5P_DEFAULT) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    float *v = NULL;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        v = malloc((size_t)(dims[0] * dims[1]) * sizeof(float));
        if (v && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) free(v), v = NULL;
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    const long a = atol(argv[2]), b = atol(argv[3]);
    if (!v || dims[0] == 0 || a < 0 || b < 0 || (hsize_t)a >= dims[1] || (hsize_t)b >= dims[1]) {
        fprintf(stderr, "logits_gap: cannot read %s, or token %ld or %ld is outside its vocabulary\n", argv[1], a, b);
        return 2;
    }
    const float *row = v + (dims[0] - 1) * dims[1];
    double m = 0;
    hsize_t best = 0;
    for (hsize_t c = 0; c < dims[1]; c++) {
        m = fmax(m, fabs((double)row[c]));
        if (row[c] > row[best]) best = c;
    }
    const double gap = fabs((double)row[a] - row[b]) / (m > 0 ? m : 1);
    printf("logit[%ld] %.6g, logit[%ld] %.6g, max |logit| %.6g, argmax %llu: gap %.3g of max |logit| (near-tie below %s)\n",
           a, row[a], b, row[b], m, (unsigned long long)best, gap, argv[4]);
    free(v);
    return gap < atof(argv[4]) ? 0 : 1;
}
