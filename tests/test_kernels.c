/* Kernel tests: the reference ops against hand-computed values, and every fast
 * op (the AVX-512 and AVX2 tables where the CPU has them, and the portable table;
 * INT4's and INT8's kernels of each instruction set called directly) against the
 * reference on many shapes: sizes that are not multiples of 8, 16 or 128, all
 * weight types, views with nonzero origins into FP8, INT4 and INT8 parents;
 * INT4's unpacking against compressed-tensors' test vectors.
 *
 * Bounds: float32 accumulation against the reference's double sums gives a
 * normalised mean squared error below 1e-12 and a max error around 1e-6 of the
 * largest output; we require NMSE <= 1e-9 and max |fast - ref| <= 1e-5 * max |ref|
 * (for matmuls the denominators are at least the typical output, sqrt(K) / 3, so
 * that one output that cancels to nearly 0 is not judged alone). A kernel that
 * drops, repeats or misscales one weight among a few hundred, or one FP8 block,
 * misses both by orders of magnitude. Outputs must be finite, and sentinel values
 * around every output buffer must survive (out-of-bounds writes).
 * FW_TEST_VERBOSE=1 prints every comparison. */
#include "kernels/ops.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/fast_int4.h"
#include "tests/check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define NMSE_MAX 1e-9
#define RELMAX_MAX 1e-5
#define GUARD 16
#define SENTINEL 1234.5678f

/* ---- helpers ---- */


static void fill(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = check_rng_uniform();
}

/* A buffer of n floats with GUARD sentinels on each side. */
static float *galloc(int64_t n) {
    float *b = malloc((size_t)(n + 2 * GUARD) * sizeof(float));
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n + 2 * GUARD; i++) b[i] = SENTINEL;
    return b + GUARD;
}

static void gfree(float *p) {
    if (p) free(p - GUARD);
}

static bool guards_ok(const float *p, int64_t n) {
    for (int i = 1; i <= GUARD; i++)
        if (p[-i] != SENTINEL || p[n - 1 + i] != SENTINEL) return false;
    return true;
}

static double worst_nmse, worst_rel;

/* Compares a (under test) with r (reference): finiteness, NMSE, relative max error.
 * `floor` is the typical output magnitude where cancellation can make single
 * outputs tiny (dot products): the denominators are at least floor^2 per element
 * and floor. */
static bool close_enough_floor(const float *a, const float *r, int64_t n, double floor, const char *what) {
    double se = 0, sr = 0, maxe = 0, maxr = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) {
            CHECK(isfinite(a[i]), "%s: element %lld is %g", what, (long long)i, a[i]);
            return false;
        }
        double e = fabs((double)a[i] - r[i]);
        se += e * e;
        sr += (double)r[i] * r[i];
        maxe = e > maxe ? e : maxe;
        maxr = fabs(r[i]) > maxr ? fabs(r[i]) : maxr;
    }
    sr = sr > n * floor * floor ? sr : n * floor * floor;
    maxr = maxr > floor ? maxr : floor;
    double nmse = sr > 0 ? se / sr : se;
    double rel = maxr > 0 ? maxe / maxr : maxe;
    bool ok = nmse <= NMSE_MAX && rel <= RELMAX_MAX;
    worst_nmse = nmse > worst_nmse ? nmse : worst_nmse;
    worst_rel = rel > worst_rel ? rel : worst_rel;
    if (getenv("FW_TEST_VERBOSE")) fprintf(stderr, "%s: nmse %.3g rel %.3g\n", what, nmse, rel);
    CHECK(ok, "%s: nmse %.3g (max %.0e), rel max err %.3g (max %.0e)", what, nmse, NMSE_MAX, rel, RELMAX_MAX);
    return ok;
}

static bool close_enough(const float *a, const float *r, int64_t n, const char *what) {
    return close_enough_floor(a, r, n, 0.0, what);
}

/* A parent weight [rows, cols] with row stride ld >= cols, random values; FP8 with
 * random block scales (scale_ld one wider than needed, to catch misuse). */
typedef struct tw {
    fw_weight w;
    void *data;
    float *scale;
} tw;

static tw tw_make(fw_wtype type, int64_t rows, int64_t cols, int64_t ld) {
    tw t = {0};
    size_t es = fw_wtype_size(type);
    t.data = malloc((size_t)(rows * ld) * es + 1);
    for (int64_t i = 0; i < rows * ld; i++) {
        float v = check_rng_uniform();
        if (type == FW_WTYPE_F32) ((float *)t.data)[i] = v;
        else if (type == FW_WTYPE_BF16) ((uint16_t *)t.data)[i] = fw_f32_to_bf16(v);
        else ((uint8_t *)t.data)[i] = fw_f32_to_fp8e4m3(v * 300.0f); /* normals and subnormals */
    }
    t.w = (fw_weight){.type = type, .rows = rows, .cols = cols, .ld = ld, .data = t.data};
    if (type == FW_WTYPE_FP8) {
        int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128 + 1;
        t.scale = malloc((size_t)(sr * sc) * sizeof(float));
        for (int64_t i = 0; i < sr * sc; i++) t.scale[i] = (1.5f + check_rng_uniform()) / 300.0f;
        t.w.scale = t.scale;
        t.w.scale_ld = sc;
    }
    return t;
}

static void tw_free(tw *t) {
    free(t->data);
    free(t->scale);
}

static const char *tname(fw_wtype t) {
    return t == FW_WTYPE_F32 ? "f32" : t == FW_WTYPE_BF16 ? "bf16" : t == FW_WTYPE_FP8 ? "fp8" : t == FW_WTYPE_INT4 ? "int4" : "int8";
}

/* The fast implementations under test: the table(s) and the matmul paths directly. */
typedef struct impl {
    const char *name;
    const fw_ops *ops;
} impl;

static impl impls[4];
static int n_impls;

/* ---- conversions, views ---- */

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_conversions(void) {
    /* fp8 e4m3fn decoding */
    CHECK(fw_fp8e4m3_to_f32(0x7E) == 448.0f, "0x7E -> %g", fw_fp8e4m3_to_f32(0x7E));
    CHECK(fw_fp8e4m3_to_f32(0xFE) == -448.0f, "0xFE -> %g", fw_fp8e4m3_to_f32(0xFE));
    CHECK(fw_fp8e4m3_to_f32(0x01) == 0x1p-9f, "0x01 -> %g", fw_fp8e4m3_to_f32(0x01));
    CHECK(fw_fp8e4m3_to_f32(0x07) == 7 * 0x1p-9f, "0x07 -> %g", fw_fp8e4m3_to_f32(0x07));
    CHECK(fw_fp8e4m3_to_f32(0x08) == 0x1p-6f, "0x08 -> %g", fw_fp8e4m3_to_f32(0x08));
    CHECK(fw_fp8e4m3_to_f32(0x38) == 1.0f, "0x38 -> %g", fw_fp8e4m3_to_f32(0x38));
    CHECK(fw_fp8e4m3_to_f32(0x3B) == 1.375f, "0x3B -> %g", fw_fp8e4m3_to_f32(0x3B));
    CHECK(fw_fp8e4m3_to_f32(0x80) == 0.0f && signbit(fw_fp8e4m3_to_f32(0x80)), "0x80 is -0");
    CHECK(isnan(fw_fp8e4m3_to_f32(0x7F)) && isnan(fw_fp8e4m3_to_f32(0xFF)), "0x7F/0xFF are NaN");
    /* fp8 encoding: exact values, saturation, ties to even */
    CHECK(fw_f32_to_fp8e4m3(448.0f) == 0x7E, "448");
    CHECK(fw_f32_to_fp8e4m3(-448.0f) == 0xFE, "-448");
    CHECK(fw_f32_to_fp8e4m3(1e6f) == 0x7E && fw_f32_to_fp8e4m3(-1e6f) == 0xFE, "saturate");
    CHECK(fw_f32_to_fp8e4m3(INFINITY) == 0x7E && fw_f32_to_fp8e4m3(-INFINITY) == 0xFE, "inf saturates");
    CHECK(fw_f32_to_fp8e4m3(460.0f) == 0x7E, "460 -> 448");
    CHECK(fw_f32_to_fp8e4m3(0x1p-9f) == 0x01, "2^-9");
    CHECK(fw_f32_to_fp8e4m3(0x1p-10f) == 0x00, "2^-10 ties to 0");
    CHECK(fw_f32_to_fp8e4m3(3 * 0x1p-10f) == 0x02, "1.5 * 2^-9 ties to 2 * 2^-9");
    CHECK(fw_f32_to_fp8e4m3(7.5f * 0x1p-9f) == 0x08, "7.5 * 2^-9 ties to the smallest normal");
    CHECK(fw_f32_to_fp8e4m3(1.0625f) == 0x38, "1 + 1/16 ties to 1");
    CHECK(fw_f32_to_fp8e4m3(1.1875f) == 0x3A, "1 + 3/16 ties to 1.25");
    CHECK(fw_f32_to_fp8e4m3(1.07f) == 0x39, "1.07 rounds up to 1.125");
    CHECK(fw_f32_to_fp8e4m3(-0.0f) == 0x80, "-0");
    CHECK(isnan(fw_fp8e4m3_to_f32(fw_f32_to_fp8e4m3(NAN))), "NaN stays NaN");
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7F) == 0x7F) continue;
        CHECK(fw_f32_to_fp8e4m3(fw_fp8e4m3_to_f32((uint8_t)b)) == b, "round trip of 0x%02X", b);
    }
    /* bf16 */
    CHECK(fw_bf16_to_f32(0x3F80) == 1.0f, "bf16 1");
    CHECK(fw_bf16_to_f32(0x4049) == 3.140625f, "bf16 pi");
    CHECK(fw_f32_to_bf16(1.0f) == 0x3F80, "1.0");
    CHECK(fw_f32_to_bf16(bitsf(0x3F808000)) == 0x3F80, "tie to even (down)");
    CHECK(fw_f32_to_bf16(bitsf(0x3F818000)) == 0x3F82, "tie to even (up)");
    CHECK(fw_f32_to_bf16(bitsf(0x3F808001)) == 0x3F81, "above the tie");
    CHECK(fw_f32_to_bf16(bitsf(0x3F807FFF)) == 0x3F80, "below the tie");
    CHECK(fw_f32_to_bf16(bitsf(0x7F7FFFFF)) == 0x7F80, "overflow rounds to inf");
    CHECK(isnan(fw_bf16_to_f32(fw_f32_to_bf16(NAN))), "bf16 NaN");
    CHECK(fw_f32_to_bf16(bitsf(0xFF800000)) == 0xFF80, "-inf");
    (void)fbits;
}

static void test_views(void) {
    tw p = tw_make(FW_WTYPE_FP8, 384, 640, 650);
    fw_weight v = fw_weight_view(&p.w, 70, 200, 100, 333);
    fw_weight vv = fw_weight_view(&v, 60, 50, 30, 40); /* origin (130, 130) */
    CHECK(v.r0 == 70 && v.c0 == 100 && vv.r0 == 130 && vv.c0 == 130, "view origins");
    int bad = 0;
    for (int64_t i = 0; i < v.rows; i += 7)
        for (int64_t j = 0; j < v.cols; j += 5)
            bad += fw_weight_get(&v, i, j) != fw_weight_get(&p.w, 70 + i, 100 + j);
    for (int64_t i = 0; i < vv.rows; i++)
        for (int64_t j = 0; j < vv.cols; j++)
            bad += fw_weight_get(&vv, i, j) != fw_weight_get(&p.w, 130 + i, 130 + j);
    CHECK(bad == 0, "%d view elements differ from the parent's", bad);
    /* element (0, 0) of the parent: the raw value times scale[0][0] */
    float e = fw_fp8e4m3_to_f32(((const uint8_t *)p.data)[0]) * p.scale[0];
    CHECK(fw_weight_get(&p.w, 0, 0) == e, "fp8 get");
    /* element (129, 260): scale block (1, 2) */
    e = fw_fp8e4m3_to_f32(((const uint8_t *)p.data)[129 * 650 + 260]) * p.scale[1 * p.w.scale_ld + 2];
    CHECK(fw_weight_get(&p.w, 129, 260) == e, "fp8 get, block (1, 2)");
    tw_free(&p);
}

/* ---- matmul, matmul_xw ---- */

typedef void (*mm_fn)(float *y, const float *x, const fw_weight *w, int64_t T);

/* The INT4 kernels of each instruction set, run directly so that this machine tests
 * every one it has, whatever fw_ops_cpu_fast picks. */
static void int4_gemv_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    CHECK(fw_cpu_int4_gemv_avx512(y, x, w, T), "int4 avx512 gemv: no memory");
}
static void int4_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    CHECK(fw_cpu_int4_gemm_avx512(y, x, w, T), "int4 avx512 gemm: no memory");
}
static void bf16_gemv(float *y, const float *x, const fw_weight *w, int64_t T) {
    CHECK(fw_cpu_bf16_gemv_avx512bf16(y, x, w, T), "bf16 gemv: no memory");
}
static void fp8_gemv(float *y, const float *x, const fw_weight *w, int64_t T) {
    CHECK(fw_cpu_fp8_gemv_avx512bf16(y, x, w, T), "fp8 gemv: refused a view in 64-column steps");
}

/* Every implementation of matmul (xw: matmul_xw) on w against the reference. */
static void check_mm(const fw_weight *w, int64_t T, bool xw) {
    const fw_ops *ref = fw_ops_cpu_ref();
    int64_t in = xw ? w->rows : w->cols, out = xw ? w->cols : w->rows;
    float *x = galloc(T * in), *y = galloc(T * out), *yr = galloc(T * out);
    fill(x, T * in);
    (xw ? ref->matmul_xw : ref->matmul)(yr, x, w, T);
    struct {
        const char *name;
        mm_fn f;
    } fs[12];
    int nf = 0;
    for (int k = 0; k < n_impls; k++) fs[nf++] = (typeof(fs[0])){impls[k].name, xw ? impls[k].ops->matmul_xw : impls[k].ops->matmul};
    if (!xw && fw_cpu_has_avx2()) { /* both matmul paths at every T (INT4: the AVX2 ones) */
        fs[nf++] = (typeof(fs[0])){"gemm", fw_cpu_matmul_gemm_avx2};
        fs[nf++] = (typeof(fs[0])){"gemv", fw_cpu_matmul_gemv_avx2};
    }
    if (!xw && w->type == FW_WTYPE_INT4 && fw_cpu_int4_ok(w) && fw_cpu_has_avx512()) { /* what "fast" may not pick */
        fs[nf++] = (typeof(fs[0])){"avx512-gemv", int4_gemv_avx512};
        fs[nf++] = (typeof(fs[0])){"avx512-gemm", int4_gemm_avx512};
    }
    if (!xw && w->type == FW_WTYPE_INT8 && fw_cpu_has_avx512()) {
        fs[nf++] = (typeof(fs[0])){"avx512-gemv", fw_cpu_int8_gemv_avx512};
        fs[nf++] = (typeof(fs[0])){"avx512-gemm", fw_cpu_int8_gemm_avx512};
    }
    if (!xw && w->type == FW_WTYPE_BF16 && fw_cpu_has_avx512bf16()) {
        fs[nf++] = (typeof(fs[0])){"avx512bf16-gemv", bf16_gemv};
    }
    if (!xw && w->type == FW_WTYPE_FP8 && fw_cpu_fp8_gemv_ok(w) && fw_cpu_has_avx512bf16())
        fs[nf++] = (typeof(fs[0])){"avx512bf16-fp8-gemv", fp8_gemv};
    if (!xw && (w->type == FW_WTYPE_BF16 || w->type == FW_WTYPE_FP8) && fw_cpu_has_avx512())
        fs[nf++] = (typeof(fs[0])){"avx512-gemm", fw_cpu_widened_gemm_avx512};
    for (int k = 0; k < nf; k++) {
        char what[160];
        snprintf(what, sizeof what, "%s %s %s [%lld x %lld] ld %lld at (%lld, %lld), T %lld", fs[k].name,
                 xw ? "matmul_xw" : "matmul", tname(w->type), (long long)w->rows, (long long)w->cols,
                 (long long)w->ld, (long long)w->r0, (long long)w->c0, (long long)T);
        fs[k].f(y, x, w, T);
        /* inputs and weights are about uniform in [-1, 1]: outputs ~ sqrt(in) / 3 */
        close_enough_floor(y, yr, T * out, sqrt((double)in) / 3, what);
        CHECK(guards_ok(y, T * out), "%s: wrote outside y", what);
    }
    gfree(x);
    gfree(y);
    gfree(yr);
}

static void test_matmul(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    const int64_t rows[] = {1, 7, 129, 300}, cols[] = {5, 33, 128, 200, 257}, Ts[] = {1, 3, 8, 9, 37};
    for (int ty = 0; ty < 3; ty++) {
        for (int a = 0; a < 4; a++) {
            for (int b = 0; b < 5; b++) {
                tw p = tw_make((fw_wtype)ty, rows[a], cols[b], cols[b] + (b & 1) * 3);
                for (int c = 0; c < 5; c++) {
                    check_mm(&p.w, Ts[c], false);
                    check_mm(&p.w, Ts[c], true);
                }
                tw_free(&p);
            }
        }
        /* Views into a parent, with origins off the 128 grid (partial FP8 blocks on
         * every side), and sizes that make the threads split the work. */
        tw p = tw_make((fw_wtype)ty, 700, 900, 905);
        const int64_t views[][4] = {{70, 200, 100, 333}, {0, 300, 129, 257}, {129, 571, 1, 899}, {255, 2, 127, 130},
                                    {129, 300, 64, 577}, {3, 130, 256, 600}}; /* the last two: FP8 in 64-column steps */
        for (int v = 0; v < 6; v++) {
            fw_weight w = fw_weight_view(&p.w, views[v][0], views[v][1], views[v][2], views[v][3]);
            for (int c = 0; c < 5; c++) {
                check_mm(&w, Ts[c], false);
                check_mm(&w, Ts[c], true);
            }
        }
        tw_free(&p);
    }
    /* Hand-computed: W = [[1, 2, 3], [4, 5, 6]] (exact in every type). */
    const float wv[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, -1, 2};
    uint16_t wb[6];
    uint8_t w8[6];
    float sc[1] = {0.5f};
    for (int i = 0; i < 6; i++) {
        wb[i] = fw_f32_to_bf16(wv[i]);
        w8[i] = fw_f32_to_fp8e4m3(2 * wv[i]);
    }
    fw_weight ws[3] = {{.type = FW_WTYPE_F32, .rows = 2, .cols = 3, .ld = 3, .data = wv},
                       {.type = FW_WTYPE_BF16, .rows = 2, .cols = 3, .ld = 3, .data = wb},
                       {.type = FW_WTYPE_FP8, .rows = 2, .cols = 3, .ld = 3, .data = w8, .scale = sc, .scale_ld = 1}};
    for (int t = 0; t < 3; t++) {
        float y[3];
        ref->matmul(y, x, &ws[t], 1);
        CHECK(y[0] == 5 && y[1] == 11, "ref matmul %s: %g %g", tname(ws[t].type), y[0], y[1]);
        ref->matmul_xw(y, x, &ws[t], 1); /* x[0:2] . W */
        CHECK(y[0] == -3 && y[1] == -3 && y[2] == -3, "ref matmul_xw %s: %g %g %g", tname(ws[t].type), y[0], y[1], y[2]);
    }
}

/* ---- INT4 (compressed-tensors pack-quantized) ---- */

/* A random INT4 weight [rows, cols] (cols a multiple of 8; the last group may be
 * partial), ld words per row, bf16 scales [rows, groups + 1] (one spare column:
 * scale_ld != groups). */
static tw tw_make_int4(int64_t rows, int64_t cols, int64_t ld, int64_t G, uint16_t **scales) {
    tw t = {0};
    uint32_t *d = malloc((size_t)(rows * ld) * 4);
    for (int64_t i = 0; i < rows * ld; i++) d[i] = check_rng_u32();
    const int64_t sl = (cols + G - 1) / G + 1;
    uint16_t *sc = malloc((size_t)(rows * sl) * 2);
    for (int64_t i = 0; i < rows * sl; i++) sc[i] = fw_f32_to_bf16((1.5f + check_rng_uniform()) / 10.0f);
    t.data = d;
    *scales = sc;
    t.w = (fw_weight){.type = FW_WTYPE_INT4, .rows = rows, .cols = cols, .ld = ld, .data = d, .gscale = sc,
                      .scale_ld = sl, .group = G};
    return t;
}

/* Column c of a packed row by bytes, as the README describes it independently of
 * the word formula: byte c/2 holds column c in its low nibble when c is even. */
/* A grouped weight's view (10..59, 72..404) and a view of that view read the
 * parent's elements, and the fast widen of one of the view's rows equals them. */
static void check_grouped_views(const char *label, const fw_weight *w) {
    fw_weight v = fw_weight_view(w, 10, 50, 72, 333), vv = fw_weight_view(&v, 5, 20, 3, 200);
    int bad = 0;
    for (int64_t i = 0; i < v.rows; i++)
        for (int64_t j = 0; j < v.cols; j++) bad += fw_weight_get(&v, i, j) != fw_weight_get(w, 10 + i, 72 + j);
    for (int64_t i = 0; i < vv.rows; i++)
        for (int64_t j = 0; j < vv.cols; j++) bad += fw_weight_get(&vv, i, j) != fw_weight_get(w, 15 + i, 75 + j);
    CHECK(bad == 0, "%s: %d view elements differ from the parent's", label, bad);
    float row[333];
    fw_cpu_widen_row(row, &v, 7, 0, 333);
    bad = 0;
    for (int64_t j = 0; j < 333; j++) bad += row[j] != fw_weight_get(&v, 7, j);
    CHECK(bad == 0, "%s: fast widen of a view differs in %d elements", label, bad);
}

static int nibble_by_bytes(const uint32_t *row, int64_t c) {
    const uint8_t *b = (const uint8_t *)row;
    return ((c % 2 ? b[c / 2] >> 4 : b[c / 2]) & 15) - 8;
}

static void test_int4(void) {
    /* The test vectors of compressed-tensors' own tests (shared/golden/README-w4.md). */
    const uint32_t words[2] = {1985229328u, 52137u};
    const int want[2][8] = {{-8, -7, -6, -5, -4, -3, -2, -1}, {1, 2, 3, 4, -8, -8, -8, -8}};
    uint16_t one[2] = {fw_f32_to_bf16(1.0f), fw_f32_to_bf16(1.0f)};
    for (int v = 0; v < 2; v++) {
        fw_weight w = {.type = FW_WTYPE_INT4, .rows = 1, .cols = 8, .ld = 1, .data = &words[v], .gscale = one,
                       .scale_ld = 1, .group = 8};
        float out[8];
        fw_cpu_widen_row(out, &w, 0, 0, 8);
        for (int c = 0; c < 8; c++) {
            CHECK(fw_weight_get(&w, 0, c) == (float)want[v][c], "word 0x%08X column %d: got %g, want %d", words[v],
                  c, fw_weight_get(&w, 0, c), want[v][c]);
            CHECK(out[c] == (float)want[v][c], "fast widen of 0x%08X column %d: %g, want %d", words[v], c, out[c],
                  want[v][c]);
        }
    }

    /* Dequantization is q * scale exactly in float32 (not rounded to bf16), the
     * nibbles read back by bytes; views keep the parent's elements. */
    uint16_t *sc;
    tw p = tw_make_int4(96, 640, 83, 32, &sc);
    int bad = 0, not_bf16 = 0;
    for (int64_t i = 0; i < 96; i++)
        for (int64_t c = 0; c < 640; c++) {
            float e = (float)nibble_by_bytes((const uint32_t *)p.data + i * 83, c) *
                      fw_bf16_to_f32(sc[i * p.w.scale_ld + c / 32]);
            bad += fw_weight_get(&p.w, i, c) != e;
            not_bf16 += fw_bf16_to_f32(fw_f32_to_bf16(e)) != e;
        }
    CHECK(bad == 0, "int4: %d elements differ from q * scale read by bytes", bad);
    CHECK(not_bf16 > 0, "int4: every product is a bf16 number, so the test cannot tell f32 from bf16 rounding");
    check_grouped_views("int4", &p.w);
    tw_free(&p);
    free(sc);

    /* Fast matmuls against the reference (every kernel this CPU has): groups of 8,
     * 32 and 128 words' worth of columns, rows not a multiple of any tile (GEMV 4
     * and 8, GEMM 32), columns a multiple of 8 but not of 32 or 128 (partial last
     * group and block), more than one chunk of scales (2048 columns) and of x
     * (1024 columns at 8 tokens), tokens 1 to 9 (the GEMV's passes and chunks of
     * 8) and past the GEMM's 12-token micro-kernel. */
    const int64_t Gs[] = {8, 32, 128}, rows[] = {1, 7, 9, 33, 300}, Ks[] = {8, 24, 136, 392, 2056};
    const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 33, 37};
    for (int g = 0; g < 3; g++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++) {
                const int64_t K = Ks[b];
                p = tw_make_int4(rows[a], K, K / 8 + (b & 1) * 3, Gs[g], &sc);
                for (int c = 0; c < 11; c++) {
                    check_mm(&p.w, Ts[c], false);
                    if (c % 4 == 0) check_mm(&p.w, Ts[c], true);
                }
                tw_free(&p);
                free(sc);
            }
    /* Views: whole words off the 128-column block and the group grid (per-lane
     * scales, groups across blocks), a single group's worth, and one starting
     * inside a word (the portable path). */
    const int64_t vG[] = {32, 128, 8};
    const int64_t views[][4] = {{70, 200, 96, 320}, {0, 300, 0, 896}, {129, 571, 8, 888}, {255, 2, 127, 130},
                                {33, 41, 40, 856}, {1, 299, 136, 136}};
    for (int g = 0; g < 3; g++) {
        p = tw_make_int4(700, 896, 115, vG[g], &sc);
        for (int k = 0; k < 6; k++) {
            fw_weight w = fw_weight_view(&p.w, views[k][0], views[k][1], views[k][2], views[k][3]);
            for (int c = 0; c < 11; c += 2) {
                check_mm(&w, Ts[c], false);
                check_mm(&w, Ts[c], true);
            }
        }
        tw_free(&p);
        free(sc);
    }
}

/* ---- INT8 (symmetric, per output channel or per group) ---- */

/* A random INT8 weight [rows, cols], ld elements per row, bf16 scales of groups of
 * G columns (G = cols: per channel), [rows, groups + 1] (scale_ld != groups). */
static tw tw_make_int8(int64_t rows, int64_t cols, int64_t ld, int64_t G, uint16_t **scales) {
    tw t = {0};
    int8_t *d = malloc((size_t)(rows * ld) + 1);
    for (int64_t i = 0; i < rows * ld; i++) d[i] = (int8_t)(check_rng_u32() & 255);
    const int64_t sl = (cols + G - 1) / G + 1;
    uint16_t *sc = malloc((size_t)(rows * sl) * 2);
    for (int64_t i = 0; i < rows * sl; i++) sc[i] = fw_f32_to_bf16((1.5f + check_rng_uniform()) / 300.0f);
    t.data = d;
    *scales = sc;
    t.w = (fw_weight){.type = FW_WTYPE_INT8, .rows = rows, .cols = cols, .ld = ld, .data = d, .gscale = sc,
                      .scale_ld = sl, .group = G};
    return t;
}

static void test_int8(void) {
    /* q * scale exactly in float32, q read as a signed byte; views keep the
     * parent's elements and their groups' scales. */
    uint16_t *sc;
    tw p = tw_make_int8(96, 640, 643, 40, &sc);
    int bad = 0, not_bf16 = 0, extremes = 0;
    for (int64_t i = 0; i < 96; i++)
        for (int64_t c = 0; c < 640; c++) {
            const uint8_t b = ((const uint8_t *)p.data)[i * 643 + c];
            const int q = b < 128 ? b : (int)b - 256;
            const float e = (float)q * fw_bf16_to_f32(sc[i * p.w.scale_ld + c / 40]);
            bad += fw_weight_get(&p.w, i, c) != e;
            not_bf16 += fw_bf16_to_f32(fw_f32_to_bf16(e)) != e;
            extremes += q == -128 || q == 127;
        }
    CHECK(bad == 0, "int8: %d elements differ from q * scale read by bytes", bad);
    CHECK(not_bf16 > 0 && extremes > 0, "int8: the values do not reach the range's ends or bf16 rounding");
    check_grouped_views("int8", &p.w);
    tw_free(&p);
    free(sc);

    /* Per channel on ragged shapes at every GEMV T and a GEMM T. */
    const int64_t rows[] = {1, 7, 129, 300}, cols[] = {5, 128, 200, 257}, Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 37};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            p = tw_make_int8(rows[a], cols[b], cols[b] + (b & 1) * 3, cols[b], &sc);
            for (int c = 0; c < 9; c++) {
                if (c % 2 && a % 2) continue; /* odd T on two of the shapes: enough */
                check_mm(&p.w, Ts[c], false);
                check_mm(&p.w, Ts[c], true);
            }
            tw_free(&p);
            free(sc);
        }
    /* Groups, also of a length no multiple of 8 (a group ends inside a vector). */
    const int64_t Gs[][2] = {{32, 256}, {40, 200}, {13, 130}, {128, 896}};
    for (int g = 0; g < 4; g++) {
        p = tw_make_int8(77, Gs[g][1], Gs[g][1] + 5, Gs[g][0], &sc);
        for (int c = 0; c < 9; c++) check_mm(&p.w, Ts[c], c % 3 == 0);
        check_mm(&p.w, 3, false);
        tw_free(&p);
        free(sc);
    }
    /* Views with column offsets, per channel (group = the parent's columns) and
     * grouped: the group of view column j is (c0 + j) / G. */
    for (int per_channel = 0; per_channel < 2; per_channel++) {
        p = tw_make_int8(700, 896, 901, per_channel ? 896 : 32, &sc);
        const int64_t views[][4] = {{70, 200, 96, 320}, {0, 300, 0, 896}, {129, 571, 3, 888}, {255, 2, 127, 130}};
        for (int k = 0; k < 4; k++) {
            fw_weight w = fw_weight_view(&p.w, views[k][0], views[k][1], views[k][2], views[k][3]);
            for (int c = 0; c < 9; c += 2) {
                check_mm(&w, Ts[c], false);
                check_mm(&w, Ts[c], true);
            }
        }
        tw_free(&p);
        free(sc);
    }
}

/* ---- small ops ---- */

static void test_embed(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    for (int ty = 0; ty < 3; ty++) {
        tw p = tw_make((fw_wtype)ty, 300, 257, 260);
        fw_weight w = fw_weight_view(&p.w, 0, 300, 0, 257);
        const int32_t ids[] = {1000, 1299, 999, 1300, -5, 1129, 1128, 1000};
        const int64_t T = 8;
        for (int k = 0; k < n_impls; k++) {
            float *y = galloc(T * 257), *yr = galloc(T * 257);
            ref->embed(yr, &w, ids, T, 1000);
            impls[k].ops->embed(y, &w, ids, T, 1000);
            CHECK(memcmp(y, yr, (size_t)T * 257 * sizeof(float)) == 0, "%s embed %s differs", impls[k].name, tname(w.type));
            CHECK(guards_ok(y, T * 257), "%s embed: wrote outside y", impls[k].name);
            CHECK(yr[2 * 257] == 0 && yr[4 * 257 + 256] == 0 && yr[3 * 257 + 7] == 0, "out-of-shard ids give zeros");
            CHECK(yr[0] == fw_weight_get(&w, 0, 0) && yr[257 + 256] == fw_weight_get(&w, 299, 256), "embed rows");
            gfree(y);
            gfree(yr);
        }
        tw_free(&p);
    }
}

static void test_rmsnorm(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    const int64_t Ds[] = {5, 8, 200, 257, 7168}, Ts[] = {1, 3, 37};
    for (int a = 0; a < 5; a++) {
        for (int b = 0; b < 3; b++) {
            int64_t D = Ds[a], T = Ts[b];
            float *x = galloc(T * D), *w = galloc(D), *y = galloc(T * D), *yr = galloc(T * D);
            fill(x, T * D);
            fill(w, D);
            ref->rmsnorm(yr, x, w, T, D, 1e-6f);
            for (int k = 0; k < n_impls; k++) {
                char what[96];
                snprintf(what, sizeof what, "%s rmsnorm T %lld D %lld", impls[k].name, (long long)T, (long long)D);
                impls[k].ops->rmsnorm(y, x, w, T, D, 1e-6f);
                close_enough(y, yr, T * D, what);
                CHECK(guards_ok(y, T * D), "%s: wrote outside y", what);
                float *xi = galloc(T * D); /* in place */
                memcpy(xi, x, (size_t)(T * D) * sizeof(float));
                impls[k].ops->rmsnorm(xi, xi, w, T, D, 1e-6f);
                close_enough(xi, yr, T * D, what);
                gfree(xi);
            }
            gfree(x);
            gfree(w);
            gfree(y);
            gfree(yr);
        }
    }
    /* Hand-computed: x = (3, 4): mean square 12.5. */
    float x[2] = {3, 4}, w[2] = {1, 2}, y[2];
    ref->rmsnorm(y, x, w, 1, 2, 0.0f);
    CHECK(fabsf(y[0] - 3 / sqrtf(12.5f)) < 1e-6f && fabsf(y[1] - 8 / sqrtf(12.5f)) < 1e-6f, "rmsnorm (3, 4): %g %g", y[0], y[1]);
}

static void test_rope(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    /* Hand-computed: pair 0 by 90 degrees, pair 1 by 180 degrees. */
    float v[4] = {1, 0, 0, 1}, c[2] = {0, -1}, s[2] = {1, 0};
    ref->rope(v, 1, 1, 4, 4, 4, c, s);
    CHECK(v[0] == 0 && v[1] == 1 && v[2] == 0 && v[3] == -1, "rope: %g %g %g %g", v[0], v[1], v[2], v[3]);
    float v2[2] = {2, 3}, c2[1] = {cosf(0.5f)}, s2[1] = {sinf(0.5f)};
    ref->rope(v2, 1, 1, 2, 2, 2, c2, s2);
    CHECK(fabsf(v2[0] - (2 * cosf(0.5f) - 3 * sinf(0.5f))) < 1e-6f && fabsf(v2[1] - (2 * sinf(0.5f) + 3 * cosf(0.5f))) < 1e-6f,
          "rope by 0.5 rad");
    /* q_pe-like layout: T tokens x H heads, the rope part after 128 other values. */
    const int64_t T = 37, H = 5, dim = 64, vs = 192, ts = H * 192;
    float *x = galloc(T * ts), *xr = galloc(T * ts), *ct = galloc(T * dim / 2), *st = galloc(T * dim / 2);
    fill(x, T * ts);
    for (int64_t i = 0; i < T * dim / 2; i++) {
        float a = check_rng_uniform() * 3.14159f;
        ct[i] = cosf(a);
        st[i] = sinf(a);
    }
    for (int k = 0; k < n_impls; k++) {
        memcpy(xr, x, (size_t)(T * ts) * sizeof(float));
        float *xf = galloc(T * ts);
        memcpy(xf, x, (size_t)(T * ts) * sizeof(float));
        ref->rope(xr + 128, T, H, ts, vs, dim, ct, st);
        impls[k].ops->rope(xf + 128, T, H, ts, vs, dim, ct, st);
        close_enough(xf, xr, T * ts, impls[k].name);
        CHECK(memcmp(xf, x, 128 * sizeof(float)) == 0, "rope touched the nope part");
        CHECK(guards_ok(xf, T * ts), "rope wrote outside x");
        gfree(xf);
    }
    gfree(x);
    gfree(xr);
    gfree(ct);
    gfree(st);
}

static void test_elementwise(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    const int64_t ns[] = {1, 7, 100003};
    for (int a = 0; a < 3; a++) {
        int64_t n = ns[a];
        float *g = galloc(n), *u = galloc(n), *y = galloc(n), *yr = galloc(n);
        fill(g, n);
        fill(u, n);
        for (int64_t i = 0; i < n; i++) g[i] *= 8;
        ref->silu_mul(yr, g, u, n);
        for (int k = 0; k < n_impls; k++) {
            impls[k].ops->silu_mul(y, g, u, n);
            close_enough(y, yr, n, "silu_mul");
            CHECK(guards_ok(y, n), "silu_mul wrote outside y");
            memcpy(y, g, (size_t)n * sizeof(float)); /* in place */
            impls[k].ops->silu_mul(y, y, u, n);
            close_enough(y, yr, n, "silu_mul in place");
            memcpy(y, g, (size_t)n * sizeof(float));
            impls[k].ops->add(y, u, n);
            for (int64_t i = 0; i < n; i++) yr[i] = g[i] + u[i];
            CHECK(memcmp(y, yr, (size_t)n * sizeof(float)) == 0, "add");
            CHECK(guards_ok(y, n), "add wrote outside y");
            ref->silu_mul(yr, g, u, n);
        }
        gfree(g);
        gfree(u);
        gfree(y);
        gfree(yr);
    }
    float g = 2, u = 3, y;
    fw_ops_cpu_ref()->silu_mul(&y, &g, &u, 1);
    CHECK(fabsf(y - 2 / (1 + expf(-2)) * 3) < 1e-6f, "silu(2) * 3 = %g", y);
}

static void test_attn(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    /* Hand-computed: scores (0, ln 3) -> p = (1/4, 3/4); v = (4, 8) -> 7. Causal:
     * with T = S = 2 query 0 sees only key 0. */
    {
        float q[2] = {1, 1}, k[2] = {0, logf(3)}, v[2] = {4, 8}, o[2];
        ref->attn_naive(o, q, k, v, 1, 2, 1, 1, 1, 1.0f);
        CHECK(fabsf(o[0] - 7) < 1e-5f, "attn_naive: %g, want 7", o[0]);
        ref->attn_naive(o, q, k, v, 2, 2, 1, 1, 1, 1.0f);
        CHECK(o[0] == 4 && fabsf(o[1] - 7) < 1e-5f, "attn_naive causal: %g %g, want 4 7", o[0], o[1]);
        float ql[1] = {1}, qp[1] = {0}, cc[2] = {0, logf(3) / 2}, pe[2] = {5, 5};
        ref->attn_absorbed(o, ql, qp, cc, 1, pe, 1, 1, 2, 1, 1, 1, 2.0f);
        float want = 0.25f * 0 + 0.75f * logf(3) / 2;
        CHECK(fabsf(o[0] - want) < 1e-5f, "attn_absorbed: %g, want %g", o[0], want);
    }
    const int64_t shapes[][5] = {/* T, S - T, H, dqk, dv */
                                 {1, 0, 1, 5, 3},    {1, 40, 3, 24, 16},  {3, 5, 5, 192, 128}, {8, 0, 2, 17, 9},
                                 {37, 0, 3, 24, 16}, {37, 100, 2, 192, 128}, {5, 64, 4, 8, 8}};
    for (int a = 0; a < 7; a++) {
        int64_t T = shapes[a][0], S = T + shapes[a][1], H = shapes[a][2], dqk = shapes[a][3], dv = shapes[a][4];
        float *q = galloc(T * H * dqk), *k = galloc(S * H * dqk), *v = galloc(S * H * dv);
        float *o = galloc(T * H * dv), *orf = galloc(T * H * dv);
        fill(q, T * H * dqk);
        fill(k, S * H * dqk);
        fill(v, S * H * dv);
        float scale = 3.0f / sqrtf((float)dqk); /* peaky enough to test the max subtraction */
        ref->attn_naive(orf, q, k, v, T, S, H, dqk, dv, scale);
        for (int i = 0; i < n_impls; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s attn_naive T %lld S %lld H %lld dqk %lld dv %lld", impls[i].name,
                     (long long)T, (long long)S, (long long)H, (long long)dqk, (long long)dv);
            impls[i].ops->attn_naive(o, q, k, v, T, S, H, dqk, dv, scale);
            close_enough(o, orf, T * H * dv, what);
            CHECK(guards_ok(o, T * H * dv), "%s: wrote outside o", what);
        }
        gfree(q);
        gfree(k);
        gfree(v);
        gfree(o);
        gfree(orf);
    }
    const int64_t ashapes[][5] = {/* T, S, H, C, R */
                                  {1, 1, 1, 8, 4},   {1, 7, 5, 12, 4},   {3, 40, 8, 64, 16},
                                  {1, 100, 6, 512, 64}, {2, 33, 3, 13, 5}};
    for (int a = 0; a < 5; a++) {
        int64_t T = ashapes[a][0], S = ashapes[a][1], H = ashapes[a][2], C = ashapes[a][3], R = ashapes[a][4];
        int64_t stride = C + R + 3; /* c and pe interleaved in one cache row, padded */
        float *ql = galloc(T * H * C), *qp = galloc(T * H * R), *cache = galloc(S * stride);
        float *o = galloc(T * H * C), *orf = galloc(T * H * C);
        fill(ql, T * H * C);
        fill(qp, T * H * R);
        fill(cache, S * stride);
        float scale = 2.0f / sqrtf((float)(C + R));
        ref->attn_absorbed(orf, ql, qp, cache, stride, cache + C, stride, T, S, H, C, R, scale);
        for (int i = 0; i < n_impls; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s attn_absorbed T %lld S %lld H %lld C %lld R %lld", impls[i].name,
                     (long long)T, (long long)S, (long long)H, (long long)C, (long long)R);
            impls[i].ops->attn_absorbed(o, ql, qp, cache, stride, cache + C, stride, T, S, H, C, R, scale);
            close_enough(o, orf, T * H * C, what);
            CHECK(guards_ok(o, T * H * C), "%s: wrote outside o", what);
        }
        gfree(ql);
        gfree(qp);
        gfree(cache);
        gfree(o);
        gfree(orf);
    }
}

/* ---- routing ---- */

static float logit(float s) { return logf(s / (1 - s)); }

static void test_route(void) {
    const fw_ops *ref = fw_ops_cpu_ref();
    /* 8 experts in 4 groups of 2, keep 2 groups, pick 2 experts. Without group
     * limiting the two best are experts 0 (0.9) and 2 (0.62); group sums are
     * g0 1.0, g1 1.22, g2 1.1, g3 0.4, so groups 1 and 2 stay and the pick is 2, 3. */
    const float s[8] = {0.9f, 0.1f, 0.62f, 0.6f, 0.55f, 0.54f, 0.2f, 0.2f};
    float lg[8], bias[8] = {0};
    for (int e = 0; e < 8; e++) lg[e] = logit(s[e]);
    fw_route_params p = {.n_experts = 8, .top_k = 2, .n_group = 4, .topk_group = 2,
                         .norm_topk_prob = true, .routed_scaling_factor = 2.5f};
    for (int k = -1; k < n_impls; k++) {
        const fw_ops *ops = k < 0 ? ref : impls[k].ops;
        int32_t ids[2];
        float w[2];
        ops->route(ids, w, lg, bias, 1, &p);
        CHECK(ids[0] == 2 && ids[1] == 3, "%s route: ids %d %d, want 2 3", ops->name, ids[0], ids[1]);
        CHECK(fabsf(w[0] - 0.62f / 1.22f * 2.5f) < 1e-5f && fabsf(w[1] - 0.6f / 1.22f * 2.5f) < 1e-5f,
              "%s route weights %g %g", ops->name, w[0], w[1]);
        /* The bias selects (group 3 now sums 1.4 and expert 7 leads) but weights use s. */
        bias[7] = 1.0f;
        ops->route(ids, w, lg, bias, 1, &p);
        CHECK(ids[0] == 7 && ids[1] == 2, "%s route with bias: ids %d %d, want 7 2", ops->name, ids[0], ids[1]);
        CHECK(fabsf(w[0] - 0.2f / 0.82f * 2.5f) < 1e-5f && fabsf(w[1] - 0.62f / 0.82f * 2.5f) < 1e-5f,
              "%s route with bias: weights %g %g", ops->name, w[0], w[1]);
        bias[7] = 0;
        /* No normalisation: weights are s * factor. One group: plain top-k. */
        fw_route_params q = p;
        q.norm_topk_prob = false;
        q.n_group = 1;
        q.topk_group = 1;
        ops->route(ids, w, lg, bias, 1, &q);
        CHECK(ids[0] == 0 && ids[1] == 2, "%s route, one group: ids %d %d, want 0 2", ops->name, ids[0], ids[1]);
        CHECK(fabsf(w[0] - 0.9f * 2.5f) < 1e-5f && fabsf(w[1] - 0.62f * 2.5f) < 1e-5f, "%s unnormalised weights", ops->name);
    }
    /* DeepSeek-V3's shape on random logits: the fast ids must equal the reference's. */
    const int64_t T = 37, E = 256, K = 8;
    fw_route_params v3 = {.n_experts = 256, .top_k = 8, .n_group = 8, .topk_group = 4,
                          .norm_topk_prob = true, .routed_scaling_factor = 2.5f};
    float *logits = galloc(T * E), *b = galloc(E), *w = galloc(T * K), *wr = galloc(T * K);
    int32_t *ids = malloc((size_t)(T * K) * sizeof(int32_t)), *idr = malloc((size_t)(T * K) * sizeof(int32_t));
    fill(logits, T * E);
    for (int64_t i = 0; i < T * E; i++) logits[i] *= 4;
    for (int64_t e = 0; e < E; e++) b[e] = 0.1f * check_rng_uniform();
    ref->route(idr, wr, logits, b, T, &v3);
    bool sorted = true, distinct = true, kept4 = true;
    for (int64_t t = 0; t < T; t++) {
        float sum = 0;
        int groups[8] = {0}, ng = 0;
        for (int64_t k = 0; k < K; k++) {
            sum += wr[t * K + k];
            int32_t e = idr[t * K + k];
            if (k > 0) {
                float sp = 1 / (1 + expf(-logits[t * E + idr[t * K + k - 1]])) + b[idr[t * K + k - 1]];
                float sc = 1 / (1 + expf(-logits[t * E + e])) + b[e];
                sorted &= sp >= sc;
            }
            for (int64_t j = 0; j < k; j++) distinct &= idr[t * K + j] != e;
            if (!groups[e / 32]++) ng++;
        }
        kept4 &= ng <= 4;
        CHECK(fabsf(sum - 2.5f) < 1e-5f, "token %lld: weights sum to %g, want 2.5", (long long)t, sum);
    }
    CHECK(sorted && distinct && kept4, "ref route: sorted %d distinct %d within 4 groups %d", sorted, distinct, kept4);
    for (int k = 0; k < n_impls; k++) {
        impls[k].ops->route(ids, w, logits, b, T, &v3);
        CHECK(memcmp(ids, idr, (size_t)(T * K) * sizeof(int32_t)) == 0, "%s route ids differ from ref", impls[k].name);
        close_enough(w, wr, T * K, "route weights");
        CHECK(guards_ok(w, T * K), "route wrote outside w");
    }
    free(ids);
    free(idr);
    gfree(logits);
    gfree(b);
    gfree(w);
    gfree(wr);
}

int main(void) {
    impls[n_impls++] = (impl){"fast", fw_ops_cpu_fast()};
    if (fw_ops_cpu_fast() != fw_ops_cpu_fast_avx512() && fw_cpu_has_avx512())
        impls[n_impls++] = (impl){"avx512", fw_ops_cpu_fast_avx512()};
    if (fw_ops_cpu_fast() != fw_ops_cpu_fast_avx2() && fw_cpu_has_avx2()) impls[n_impls++] = (impl){"avx2", fw_ops_cpu_fast_avx2()};
    if (fw_ops_cpu_fast() != fw_ops_cpu_fast_generic()) impls[n_impls++] = (impl){"generic", fw_ops_cpu_fast_generic()};
    fprintf(stderr, "fast ops: %s\n", fw_ops_cpu_fast()->name);
    test_conversions();
    test_views();
    test_matmul();
    test_int4();
    test_int8();
    test_embed();
    test_rmsnorm();
    test_rope();
    test_elementwise();
    test_attn();
    test_route();
    fprintf(stderr, "worst NMSE %.3g (bound %.0e), worst relative max error %.3g (bound %.0e)\n", worst_nmse,
            NMSE_MAX, worst_rel, RELMAX_MAX);
    return check_result();
}
