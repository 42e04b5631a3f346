/* The CUDA ops (kernels/cuda) against the CPU reference (kernels/cpu/ref.c), the
 * way ggml's test-backend-ops compares backends: random inputs on many shapes
 * (ragged T, sizes that are not multiples of 8, 16 or 128, all weight types, FP8
 * with partial blocks, views with origins off the 128 grid, odd row strides), the
 * reference run on the same bf16-rounded inputs, compared by normalised mean
 * squared error NMSE = sum (y - ref)^2 / sum ref^2. Every output must be finite
 * (outputs start as NaN, so an element never written fails too), and 256 sentinel
 * bytes on each side of every device buffer must survive every op.
 *
 * Bounds (the GPU keeps activations in bf16, accumulates in fp32):
 * - bf16 outputs: rounding to bf16 (8 significant bits: relative error up to 2^-8,
 *   uniform within half an ulp) alone gives NMSE ~ 2.6e-6 on random data; fp32 sums
 *   against the reference's double sums add ~1e-12. Bound 1e-5 (4x headroom; a
 *   dropped, repeated or misscaled block of a few hundred moves NMSE by > 1e-3).
 *   Outputs of fewer than 64 elements: 2e-5, since one element alone may reach
 *   (2^-8)^2 = 1.5e-5.
 * - fp32 outputs (matmul_f32, router weights): fp32 rounding only; 1e-8 and 1e-10.
 * - cuBLASLt FP8: it quantizes the activations to e4m3 per token per 128 channels
 *   (as DeepSeek's reference). Against a reference fed the same quantized
 *   activations (emulated here bit for bit): 1e-5 as above. Against the exact
 *   reference: e4m3's 3 mantissa bits give NMSE ~ 6e-4; bound 5e-3.
 * - embed, add, the f32 <-> bf16 conversions: exact (bitwise).
 * - route: the chosen ids must equal the reference's exactly, except tokens whose
 *   reference margins are ambiguous: 0 < gap < 1e-3 between the top_k-th and the
 *   next candidate expert, or between the topk_group-th and the next group, or
 *   0 < gap < 1e-5 between neighbours inside the top_k (the order); those are
 *   skipped and counted. Exact ties (gap 0) are compared: both break them by the
 *   lower index.
 * One line per op and shape with the measured NMSE; then a timing of the matmul at
 * N = 18432, K = 7168 (printed, not asserted; FW_TEST_NO_TIMING=1 leaves it out).
 * Exit 77 without a GPU. */
#include "kernels/cuda/ops_cuda.h"
#include "tests/check.h"
#include "tests/cuda_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fw_cuda_ctx ctx;
static int n_lines;
static double worst_bf16; /* the worst NMSE among bf16-bound comparisons */

/* An op under test: its status and the stream's (kernel faults) are checks. */
bool op_ok(int st, const char *what) {
    if (st != FW_CUDA_OK) {
        CHECK(st == FW_CUDA_OK, "%s: %s", what, ctx.err);
        return false;
    }
    st = fw_cuda_sync(&ctx);
    CHECK(st == FW_CUDA_OK, "%s: %s", what, ctx.err);
    return st == FW_CUDA_OK;
}

/* ---- random numbers ---- */


float *hnew(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}

/* n values uniform in [-a, a), rounded to bf16 (what the GPU will see). */
float *hrand_bf16(int64_t n, float a) {
    float *p = hnew(n);
    for (int64_t i = 0; i < n; i++) p[i] = fw_bf16_to_f32(fw_f32_to_bf16(a * check_rng_uniform()));
    return p;
}

/* ---- device buffers with guards ---- */

void *dp(dbuf b) { return b.base + GUARD; }

static void dfill(dbuf b) {
    unsigned char *h = malloc(b.bytes + 2 * GUARD);
    if (!h) exit(1);
    memset(h, GUARD_BYTE, GUARD);
    memset(h + GUARD, FILL_BYTE, b.bytes);
    memset(h + GUARD + b.bytes, GUARD_BYTE, GUARD);
    CU(fw_cuda_upload(&ctx, b.base, h, b.bytes + 2 * GUARD));
    free(h);
}

dbuf dnew(size_t bytes) {
    dbuf b = {NULL, bytes};
    CU(fw_cuda_malloc(&ctx, (void **)&b.base, bytes + 2 * GUARD));
    dfill(b);
    return b;
}

void dfree(dbuf *b) {
    fw_cuda_free(b->base);
    b->base = NULL;
}

static bool dguards_ok(dbuf b) {
    unsigned char h[2 * GUARD];
    CU(fw_cuda_download(&ctx, h, b.base, GUARD));
    CU(fw_cuda_download(&ctx, h + GUARD, b.base + GUARD + b.bytes, GUARD));
    for (int i = 0; i < 2 * GUARD; i++)
        if (h[i] != GUARD_BYTE) return false;
    return true;
}

/* A device bf16 copy of x (x must hold bf16 values already). */
dbuf dbf16(const float *x, int64_t n) {
    dbuf b = dnew((size_t)n * 2);
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) h[i] = fw_f32_to_bf16(x[i]);
    CU(fw_cuda_upload(&ctx, dp(b), h, (size_t)n * 2));
    free(h);
    return b;
}

dbuf df32(const float *x, int64_t n) {
    dbuf b = dnew((size_t)n * 4);
    CU(fw_cuda_upload(&ctx, dp(b), x, (size_t)n * 4));
    return b;
}

/* Downloads n bf16 values, widened. */
void get_bf16(float *y, dbuf b, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    CU(fw_cuda_download(&ctx, h, dp(b), (size_t)n * 2));
    for (int64_t i = 0; i < n; i++) y[i] = fw_bf16_to_f32(h[i]);
    free(h);
}

/* ---- comparison ---- */

/* NMSE of y against ref, finiteness, one log line; returns the NMSE. */
double compare(const char *op, const char *shape, const char *path, const float *y, const float *ref, int64_t n,
                      double bound) {
    double se = 0, sr = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            if (bad < 0) bad = i;
            continue;
        }
        double e = (double)y[i] - ref[i];
        se += e * e;
        sr += (double)ref[i] * ref[i];
    }
    double nmse = sr > 0 ? se / sr : se;
    if (bound == NMSE_BF16 && n < 64) bound = NMSE_BF16_FEW;
    bool ok = bad < 0 && nmse <= bound;
    printf("%-16s %-58s %-9s nmse %9.3e (bound %.0e) %s\n", op, shape, path, nmse, bound, ok ? "ok" : "FAIL");
    n_lines++;
    if ((bound == NMSE_BF16 || bound == NMSE_BF16_FEW) && nmse > worst_bf16) worst_bf16 = nmse;
    CHECK(bad < 0, "%s %s [%s]: element %lld is %g (never written, or overflow)", op, shape, path, (long long)bad,
          bad >= 0 ? y[bad] : 0.0f);
    CHECK(nmse <= bound, "%s %s [%s]: nmse %.3e > %.0e", op, shape, path, nmse, bound);
    return nmse;
}

void check_guards(dbuf b, const char *op, const char *shape) {
    CHECK(dguards_ok(b), "%s %s: wrote outside its output", op, shape);
}

static const char *path_name(fw_cuda_mm_path p) {
    switch (p) {
    case FW_CUDA_MM_LT_BF16: return "lt-bf16";
    case FW_CUDA_MM_LT_FP8: return "lt-fp8";
    case FW_CUDA_MM_GEMV: return "own-gemv";
    case FW_CUDA_MM_TILED: return "own-tiled";
    default: return "none";
    }
}

const char *tname(fw_wtype t) {
    return t == FW_WTYPE_F32 ? "f32" : t == FW_WTYPE_BF16 ? "bf16" : t == FW_WTYPE_FP8 ? "fp8" : "int4";
}

/* ---- host weights ---- */

/* A host parent [rows, cols], row stride ld, random values; FP8 with random block
 * scales and a scale_ld one wider than needed (catches misuse). */
hw hw_make(fw_wtype type, int64_t rows, int64_t cols, int64_t ld) {
    hw t;
    memset(&t, 0, sizeof t);
    size_t es = fw_wtype_size(type);
    t.data = malloc((size_t)(rows * ld) * es + 1);
    if (!t.data) exit(1);
    for (int64_t i = 0; i < rows * ld; i++) {
        float v = check_rng_uniform();
        if (type == FW_WTYPE_F32) ((float *)t.data)[i] = v;
        else if (type == FW_WTYPE_BF16) ((uint16_t *)t.data)[i] = fw_f32_to_bf16(v);
        else ((uint8_t *)t.data)[i] = fw_f32_to_fp8e4m3(v * 300.0f); /* normals and subnormals */
    }
    t.w = (fw_weight){.type = type, .rows = rows, .cols = cols, .ld = ld, .data = t.data};
    if (type == FW_WTYPE_FP8) {
        int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128 + 1;
        t.scale = hnew(sr * sc);
        for (int64_t i = 0; i < sr * sc; i++) t.scale[i] = (1.5f + check_rng_uniform()) / 300.0f;
        t.w.scale = t.scale;
        t.w.scale_ld = sc;
    }
    return t;
}

hw hw_make_int4(int64_t rows, int64_t cols, int64_t group) {
    hw t;
    memset(&t, 0, sizeof t);
    const int64_t ld = cols / 8, groups = (cols + group - 1) / group;
    uint32_t *q = malloc((size_t)(rows * ld) * 4 + 4);
    t.gscale = malloc((size_t)(rows * groups) * 2 + 2);
    if (!q || !t.gscale) exit(1);
    for (int64_t i = 0; i < rows * ld; i++)
        q[i] = (uint32_t)(check_rng_uniform() * 65536.0f + 65536.0f) << 16 ^ (uint32_t)(check_rng_uniform() * 65536.0f + 65536.0f);
    for (int64_t i = 0; i < rows * groups; i++) t.gscale[i] = fw_f32_to_bf16((1.5f + check_rng_uniform()) / 8.0f);
    t.data = q;
    t.w = (fw_weight){.type = FW_WTYPE_INT4, .rows = rows, .cols = cols, .ld = ld, .data = q, .gscale = t.gscale,
                      .scale_ld = groups, .group = group};
    return t;
}

void hw_free(hw *t) {
    free(t->data);
    free(t->scale);
    free(t->gscale);
}

/* ---- conversions ---- */

static void test_convert(void) {
    const int64_t n = 4096;
    float *x = hnew(n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = check_rng_u32();
        switch (i % 4) {
        case 0: x[i] = check_rng_uniform() * 1000.0f; break;
        case 1: u = (u & 0x807F0000u) | (check_rng_u32() % 254 + 1) << 23 | 0x8000u; memcpy(&x[i], &u, 4); break; /* ties */
        case 2: u &= 0x807FFFFFu; memcpy(&x[i], &u, 4); break; /* subnormals */
        default: u = (u & 0x807FFFFFu) | (check_rng_u32() % 254 + 1) << 23; memcpy(&x[i], &u, 4); break; /* any exponent */
        }
    }
    x[0] = INFINITY, x[1] = -INFINITY, x[2] = 0.0f, x[3] = -0.0f, x[5] = 3.4028235e38f; /* FLT_MAX rounds to inf */
    dbuf df = df32(x, n), db = dnew((size_t)n * 2), dback = dnew((size_t)n * 4);
    op_ok(fw_cuda_f32_to_bf16(&ctx, dp(db), dp(df), n), "f32_to_bf16");
    op_ok(fw_cuda_bf16_to_f32(&ctx, dp(dback), dp(db), n), "bf16_to_f32");
    uint16_t *h = malloc((size_t)n * 2);
    float *back = hnew(n);
    CU(fw_cuda_download(&ctx, h, dp(db), (size_t)n * 2));
    CU(fw_cuda_download(&ctx, back, dp(dback), (size_t)n * 4));
    int64_t bad = 0, bad_back = 0;
    for (int64_t i = 0; i < n; i++) {
        bad += h[i] != fw_f32_to_bf16(x[i]);
        float r = fw_bf16_to_f32(h[i]);
        bad_back += memcmp(&r, &back[i], 4) != 0;
    }
    printf("%-16s %-58s %-9s mismatches %lld, back %lld (bound 0) %s\n", "convert", "4096 values: ties, subnormals, inf", "-",
           (long long)bad, (long long)bad_back, bad || bad_back ? "FAIL" : "ok");
    CHECK(bad == 0 && bad_back == 0, "f32 <-> bf16: %lld / %lld values differ from fw_f32_to_bf16 / fw_bf16_to_f32",
          (long long)bad, (long long)bad_back);
    check_guards(db, "f32_to_bf16", "");
    check_guards(dback, "bf16_to_f32", "");
    free(h);
    free(back);
    free(x);
    dfree(&df);
    dfree(&db);
    dfree(&dback);
}

/* ---- embed ---- */

static void check_embed(const char *label, const fw_weight *hv, const fw_weight *dv, const int32_t *ids, int64_t T,
                        int64_t vocab0) {
    int64_t D = hv->cols;
    float *yr = hnew(T * D), *y = hnew(T * D);
    fw_ops_cpu_ref()->embed(yr, hv, ids, T, vocab0);
    dbuf dids = dnew((size_t)T * 4), dy = dnew((size_t)(T * D) * 2);
    CU(fw_cuda_upload(&ctx, dp(dids), ids, (size_t)T * 4));
    char shape[128];
    snprintf(shape, sizeof shape, "%s %s T %lld D %lld vocab0 %lld", label, tname(hv->type), (long long)T, (long long)D,
             (long long)vocab0);
    if (op_ok(fw_cuda_embed(&ctx, dp(dy), dv, dp(dids), T, vocab0), shape)) {
        uint16_t *h = malloc((size_t)(T * D) * 2);
        CU(fw_cuda_download(&ctx, h, dp(dy), (size_t)(T * D) * 2));
        int64_t bad = 0;
        for (int64_t i = 0; i < T * D; i++) bad += h[i] != fw_f32_to_bf16(yr[i]);
        printf("%-16s %-58s %-9s mismatches %lld (bound 0, exact) %s\n", "embed", shape, "-", (long long)bad,
               bad ? "FAIL" : "ok");
        CHECK(bad == 0, "embed %s: %lld elements differ from bf16(reference)", shape, (long long)bad);
        free(h);
    }
    check_guards(dy, "embed", shape);
    dfree(&dids);
    dfree(&dy);
    free(yr);
    free(y);
}

static void test_embed(void) {
    for (int ty = 0; ty < 3; ty++) {
        /* A view off the 128 grid of a device parent, as the CPU view of the host parent. */
        hw p = hw_make((fw_wtype)ty, 300, 300, 303);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        fw_weight hv = fw_weight_view(&p.w, 10, 280, 3, 257), dv = fw_weight_view(&d.w, 10, 280, 3, 257);
        const int32_t ids[] = {1000, 1279, 999, 1280, -5, 1129, 1128, 1000};
        check_embed("view (10, 3)", &hv, &dv, ids, 8, 1000);
        fw_cuda_weight_free(&d);
        hw_free(&p);
        /* A wide one (DeepSeek's hidden size), ids mostly inside the shard. */
        p = hw_make((fw_wtype)ty, 160, 7168, 7168);
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        int32_t big[37];
        for (int t = 0; t < 37; t++) big[t] = 500 + (int32_t)(check_rng_u32() % 180);
        check_embed("wide", &p.w, &d.w, big, 37, 510);
        fw_cuda_weight_free(&d);
        hw_free(&p);
    }
}

/* ---- rmsnorm ---- */

static void test_rmsnorm(void) {
    const int64_t Ds[] = {48, 96, 129, 512, 7168}, Ts[] = {1, 3, 37, 130};
    for (int a = 0; a < 5; a++) {
        for (int b = 0; b < 4; b++) {
            int64_t D = Ds[a], T = Ts[b];
            float *x = hrand_bf16(T * D, 3.0f), *w = hnew(D), *yr = hnew(T * D), *y = hnew(T * D);
            for (int64_t d = 0; d < D; d++) w[d] = 0.5f + check_rng_uniform();
            fw_ops_cpu_ref()->rmsnorm(yr, x, w, T, D, 1e-6f);
            dbuf dx = dbf16(x, T * D), dw = df32(w, D), dy = dnew((size_t)(T * D) * 2);
            char shape[96];
            snprintf(shape, sizeof shape, "T %lld D %lld", (long long)T, (long long)D);
            if (op_ok(fw_cuda_rmsnorm(&ctx, dp(dy), dp(dx), dp(dw), T, D, 1e-6f), shape)) {
                get_bf16(y, dy, T * D);
                compare("rmsnorm", shape, "-", y, yr, T * D, NMSE_BF16);
            }
            check_guards(dy, "rmsnorm", shape);
            if (op_ok(fw_cuda_rmsnorm(&ctx, dp(dx), dp(dx), dp(dw), T, D, 1e-6f), shape)) { /* in place */
                get_bf16(y, dx, T * D);
                compare("rmsnorm(inplace)", shape, "-", y, yr, T * D, NMSE_BF16);
            }
            check_guards(dx, "rmsnorm in place", shape);
            dfree(&dx);
            dfree(&dw);
            dfree(&dy);
            free(x);
            free(w);
            free(yr);
            free(y);
        }
    }
}

/* ---- rope ---- */

static void check_rope(int64_t T, int64_t n_vec, int64_t ts, int64_t vs, int64_t dim, int64_t off, const char *label) {
    int64_t n = T * ts, half = dim / 2;
    float *x = hrand_bf16(n, 1.0f), *xr = hnew(n), *y = hnew(n), *ct = hnew(T * half), *st = hnew(T * half);
    for (int64_t i = 0; i < T * half; i++) {
        float a = check_rng_uniform() * 3.14159265f;
        ct[i] = cosf(a);
        st[i] = sinf(a);
    }
    memcpy(xr, x, (size_t)n * sizeof(float));
    fw_ops_cpu_ref()->rope(xr + off, T, n_vec, ts, vs, dim, ct, st);
    dbuf dx = dbf16(x, n), dc = df32(ct, T * half), ds = df32(st, T * half);
    char shape[128];
    snprintf(shape, sizeof shape, "%s T %lld n_vec %lld dim %lld strides %lld/%lld", label, (long long)T,
             (long long)n_vec, (long long)dim, (long long)ts, (long long)vs);
    if (op_ok(fw_cuda_rope(&ctx, (fw_bf16 *)dp(dx) + off, T, n_vec, ts, vs, dim, dp(dc), dp(ds)), shape)) {
        get_bf16(y, dx, n);
        compare("rope", shape, "-", y, xr, n, NMSE_BF16);
        /* Elements outside the rotated vectors must be untouched (bit for bit). */
        char *rot = calloc((size_t)n, 1);
        for (int64_t t = 0; t < T; t++)
            for (int64_t v = 0; v < n_vec; v++)
                for (int64_t i = 0; i < dim; i++) rot[off + t * ts + v * vs + i] = 1;
        int64_t touched = 0;
        for (int64_t i = 0; i < n; i++) touched += !rot[i] && memcmp(&y[i], &x[i], 4) != 0;
        CHECK(touched == 0, "rope %s: %lld elements outside the rotated dims changed", shape, (long long)touched);
        free(rot);
    }
    check_guards(dx, "rope", shape);
    dfree(&dx);
    dfree(&dc);
    dfree(&ds);
    free(x);
    free(xr);
    free(y);
    free(ct);
    free(st);
}

static void test_rope(void) {
    const int64_t Ts[] = {1, 4, 37, 130};
    for (int a = 0; a < 4; a++) {
        int64_t T = Ts[a];
        check_rope(T, 5, 5 * 192, 192, 64, 128, "q_pe (H 5)");    /* q: (T, H, 192), rope dims after 128 */
        check_rope(T, 1, 576, 0, 64, 512, "k_pe");                /* kv_a: (T, 576), rope dims after 512 */
        check_rope(T, 3, 3 * 24 + 5, 24, 8, 16, "tiny (H 3)");   /* odd token stride */
    }
}

/* ---- silu_mul, add ---- */

static void test_elementwise(void) {
    const int64_t ns[] = {1, 7, 4099, 100003};
    for (int a = 0; a < 4; a++) {
        int64_t n = ns[a];
        float *g = hrand_bf16(n, 8.0f), *u = hrand_bf16(n, 1.0f), *yr = hnew(n), *y = hnew(n);
        fw_ops_cpu_ref()->silu_mul(yr, g, u, n);
        dbuf dg = dbf16(g, n), du = dbf16(u, n), dy = dnew((size_t)n * 2);
        char shape[64];
        snprintf(shape, sizeof shape, "n %lld", (long long)n);
        if (op_ok(fw_cuda_silu_mul(&ctx, dp(dy), dp(dg), dp(du), n), shape)) {
            get_bf16(y, dy, n);
            compare("silu_mul", shape, "-", y, yr, n, NMSE_BF16);
        }
        check_guards(dy, "silu_mul", shape);
        if (op_ok(fw_cuda_silu_mul(&ctx, dp(dg), dp(dg), dp(du), n), shape)) { /* y == g */
            get_bf16(y, dg, n);
            compare("silu_mul(inplace)", shape, "-", y, yr, n, NMSE_BF16);
        }
        check_guards(dg, "silu_mul in place", shape);
        /* add: bf16(float(y) + float(x)) is exactly what the CPU gets rounding its sum. */
        dfree(&dg);
        dg = dbf16(g, n);
        if (op_ok(fw_cuda_add(&ctx, dp(dg), dp(du), n), shape)) {
            get_bf16(y, dg, n);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += y[i] != fw_bf16_to_f32(fw_f32_to_bf16(g[i] + u[i]));
            printf("%-16s %-58s %-9s mismatches %lld (bound 0, exact) %s\n", "add", shape, "-", (long long)bad,
                   bad ? "FAIL" : "ok");
            CHECK(bad == 0, "add %s: %lld elements differ from bf16(g + u)", shape, (long long)bad);
        }
        check_guards(dg, "add", shape);
        dfree(&dg);
        dfree(&du);
        dfree(&dy);
        free(g);
        free(u);
        free(yr);
        free(y);
    }
}

/* ---- route ---- */

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* The smallest ambiguous margin of the reference's choice for one token: whether
 * to skip it (0 < gap < 1e-3 at the group or expert boundary, 0 < gap < 1e-5 in
 * the order inside the top-k). Mirrors ref.c's selection. */
static bool route_ambiguous(const float *lg, const float *bias, const fw_route_params *p) {
    int E = p->n_experts, K = p->top_k;
    int G = p->n_group > 1 ? p->n_group : 1, TG = p->n_group > 1 ? p->topk_group : 1, gs = E / G;
    float sb[4096], gsc[256];
    int order[4096], gorder[256];
    for (int e = 0; e < E; e++) sb[e] = sigm(lg[e]) + (bias ? bias[e] : 0.0f);
    for (int g = 0; g < G; g++) {
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int i = 0; i < gs; i++) {
            float v = sb[g * gs + i];
            if (v > b1) b2 = b1, b1 = v;
            else if (v > b2) b2 = v;
        }
        gsc[g] = gs >= 2 ? 0.0f + b1 + b2 : b1;
    }
    /* groups by score, ties to the lower index (insertion sort, stable) */
    for (int g = 0; g < G; g++) {
        int j = g;
        while (j > 0 && gsc[gorder[j - 1]] < gsc[g]) gorder[j] = gorder[j - 1], j--;
        gorder[j] = g;
    }
    if (TG < G) {
        float gap = gsc[gorder[TG - 1]] - gsc[gorder[TG]];
        if (gap > 0 && gap < 1e-3f) return true;
    }
    int nc = 0;
    for (int r = 0; r < TG && r < G; r++)
        for (int i = 0; i < gs; i++) {
            int e = gorder[r] * gs + i, j = nc++;
            while (j > 0 && (sb[order[j - 1]] < sb[e] || (sb[order[j - 1]] == sb[e] && order[j - 1] > e)))
                order[j] = order[j - 1], j--;
            order[j] = e;
        }
    for (int k = 0; k + 1 < nc && k < K; k++) {
        float gap = sb[order[k]] - sb[order[k + 1]];
        float thr = k == K - 1 ? 1e-3f : 1e-5f;
        if (gap > 0 && gap < thr) return true;
    }
    return false;
}

static void check_route(const char *label, int64_t T, const fw_route_params *p, float lscale, float bscale, bool coarse,
                        bool use_bias) {
    int E = p->n_experts, K = p->top_k;
    float *lg = hnew(T * E), *bias = hnew(E), *w = hnew(T * K), *wr = hnew(T * K);
    int32_t *ids = malloc((size_t)(T * K) * 4), *idr = malloc((size_t)(T * K) * 4);
    for (int64_t i = 0; i < T * E; i++) lg[i] = coarse ? 0.5f * (float)((int)(check_rng_u32() % 5) - 2) : lscale * check_rng_uniform();
    for (int e = 0; e < E; e++) bias[e] = bscale * check_rng_uniform();
    const float *bp = use_bias ? bias : NULL;
    fw_ops_cpu_ref()->route(idr, wr, lg, bp, T, p);
    dbuf dl = df32(lg, T * E), db = df32(bias, E), di = dnew((size_t)(T * K) * 4), dw = dnew((size_t)(T * K) * 4);
    char shape[128];
    snprintf(shape, sizeof shape, "%s E %d k %d groups %d/%d T %lld%s", label, E, K, p->n_group, p->topk_group,
             (long long)T, use_bias ? "" : " no bias");
    if (op_ok(fw_cuda_route(&ctx, dp(di), dp(dw), dp(dl), use_bias ? dp(db) : NULL, T, p), shape)) {
        CU(fw_cuda_download(&ctx, ids, dp(di), (size_t)(T * K) * 4));
        CU(fw_cuda_download(&ctx, w, dp(dw), (size_t)(T * K) * 4));
        int64_t skipped = 0, compared = 0, mism = 0, first_bad = -1;
        float *wc = hnew(T * K), *wrc = hnew(T * K);
        int64_t nw = 0;
        for (int64_t t = 0; t < T; t++) {
            if (route_ambiguous(lg + t * E, bp, p)) {
                skipped++;
                continue;
            }
            compared++;
            bool same = memcmp(ids + t * K, idr + t * K, (size_t)K * 4) == 0;
            if (!same) {
                mism++;
                if (first_bad < 0) first_bad = t;
                continue;
            }
            for (int k = 0; k < K; k++) wc[nw] = w[t * K + k], wrc[nw++] = wr[t * K + k];
        }
        printf("%-16s %-58s %-9s compared %lld, skipped %lld (ambiguous), id mismatches %lld %s\n", "route", shape, "-",
               (long long)compared, (long long)skipped, (long long)mism, mism ? "FAIL" : "ok");
        CHECK(mism == 0, "route %s: %lld tokens chose other experts (first: token %lld, gpu %d.. ref %d..)", shape,
              (long long)mism, (long long)first_bad, first_bad >= 0 ? ids[first_bad * K] : 0,
              first_bad >= 0 ? idr[first_bad * K] : 0);
        CHECK(compared >= (T + 1) / 2, "route %s: only %lld of %lld tokens compared", shape, (long long)compared, (long long)T);
        compare("route weights", shape, "-", wc, wrc, nw, NMSE_ROUTE_W);
        free(wc);
        free(wrc);
    }
    check_guards(di, "route ids", shape);
    check_guards(dw, "route weights", shape);
    dfree(&dl);
    dfree(&db);
    dfree(&di);
    dfree(&dw);
    free(lg);
    free(bias);
    free(w);
    free(wr);
    free(ids);
    free(idr);
}

static void test_route(void) {
    fw_route_params v3 = {.n_experts = 256, .top_k = 8, .n_group = 8, .topk_group = 4, .norm_topk_prob = true,
                          .routed_scaling_factor = 2.5f};
    fw_route_params tiny = {.n_experts = 16, .top_k = 4, .n_group = 4, .topk_group = 2, .norm_topk_prob = true,
                            .routed_scaling_factor = 2.5f};
    fw_route_params flat = {.n_experts = 64, .top_k = 6, .n_group = 1, .topk_group = 1, .norm_topk_prob = false,
                            .routed_scaling_factor = 1.0f};
    fw_route_params few = {.n_experts = 16, .top_k = 10, .n_group = 4, .topk_group = 2, .norm_topk_prob = true,
                           .routed_scaling_factor = 2.5f}; /* 8 candidates for 10 slots: padded */
    check_route("v3", 130, &v3, 2.0f, 0.1f, false, true);
    check_route("v3 decode", 1, &v3, 2.0f, 0.1f, false, true);
    check_route("v3 ties", 37, &v3, 0, 0, true, false);
    check_route("tiny", 37, &tiny, 2.0f, 0.05f, false, true);
    check_route("tiny ties", 37, &tiny, 0, 0, true, false);
    check_route("one group", 37, &flat, 2.0f, 0, false, false);
    check_route("padded", 4, &few, 2.0f, 0.05f, false, true);
    fw_route_params g16 = {.n_experts = 256, .top_k = 8, .n_group = 16, .topk_group = 4, .norm_topk_prob = true,
                           .routed_scaling_factor = 2.5f};
    fw_route_params e96 = {.n_experts = 96, .top_k = 5, .n_group = 2, .topk_group = 1, .norm_topk_prob = true,
                           .routed_scaling_factor = 2.5f};
    fw_route_params g32 = {.n_experts = 32, .top_k = 32, .n_group = 32, .topk_group = 8, .norm_topk_prob = true,
                           .routed_scaling_factor = 2.5f}; /* one expert per group; 8 candidates for 32 slots */
    check_route("v3 batch", 256, &v3, 2.0f, 0.1f, false, true);
    check_route("one group ties", 37, &flat, 0, 0, true, false);
    check_route("16 groups", 37, &g16, 2.0f, 0.1f, false, true);
    check_route("96 experts", 37, &e96, 2.0f, 0.05f, false, true);
    check_route("32 groups padded", 8, &g32, 2.0f, 0.05f, false, true);
}

/* ---- attention ---- */

static void test_attn(void) {
    const int64_t shapes[][5] = {/* T, S - T, H, dqk, dv */
                                 {1, 0, 1, 5, 3},      {1, 40, 3, 24, 16},    {3, 5, 5, 192, 128},
                                 {4, 0, 2, 17, 9},     {37, 0, 3, 24, 16},    {37, 100, 2, 192, 128},
                                 {130, 0, 4, 192, 128}, {1, 700, 2, 192, 128}, {2, 10, 2, 64, 520}};
    for (int a = 0; a < 9; a++) {
        int64_t T = shapes[a][0], S = T + shapes[a][1], H = shapes[a][2], dqk = shapes[a][3], dv = shapes[a][4];
        float *q = hrand_bf16(T * H * dqk, 1), *k = hrand_bf16(S * H * dqk, 1), *v = hrand_bf16(S * H * dv, 1);
        float *orf = hnew(T * H * dv), *o = hnew(T * H * dv);
        float scale = 3.0f / sqrtf((float)dqk); /* peaky: tests the max subtraction */
        fw_ops_cpu_ref()->attn_naive(orf, q, k, v, T, S, H, dqk, dv, scale);
        dbuf dq = dbf16(q, T * H * dqk), dk = dbf16(k, S * H * dqk), dvv = dbf16(v, S * H * dv);
        dbuf dout = dnew((size_t)(T * H * dv) * 2);
        char shape[128];
        snprintf(shape, sizeof shape, "T %lld S %lld H %lld dqk %lld dv %lld", (long long)T, (long long)S, (long long)H,
                 (long long)dqk, (long long)dv);
        if (op_ok(fw_cuda_attn_naive(&ctx, dp(dout), dp(dq), dp(dk), dp(dvv), T, S, H, dqk, dv, scale), shape)) {
            get_bf16(o, dout, T * H * dv);
            compare("attn_naive", shape, "-", o, orf, T * H * dv, NMSE_BF16);
        }
        check_guards(dout, "attn_naive", shape);
        dfree(&dq);
        dfree(&dk);
        dfree(&dvv);
        dfree(&dout);
        free(q);
        free(k);
        free(v);
        free(orf);
        free(o);
    }
    const int64_t ashapes[][5] = {/* T, S, H, C, R */
                                  {1, 1, 1, 8, 4},      {1, 7, 5, 12, 4},     {3, 40, 8, 64, 16},
                                  {1, 300, 6, 512, 64}, {2, 33, 3, 13, 5},    {4, 1000, 16, 512, 64},
                                  {37, 37, 2, 48, 16},  {130, 200, 2, 96, 16}};
    for (int a = 0; a < 8; a++) {
        int64_t T = ashapes[a][0], S = ashapes[a][1], H = ashapes[a][2], C = ashapes[a][3], R = ashapes[a][4];
        int64_t stride = C + R + 3; /* c and pe in one cache row, padded (odd: unaligned rows) */
        float *ql = hrand_bf16(T * H * C, 1), *qp = hrand_bf16(T * H * R, 1), *cache = hrand_bf16(S * stride, 1);
        float *orf = hnew(T * H * C), *o = hnew(T * H * C);
        float scale = 2.0f / sqrtf((float)(C + R));
        fw_ops_cpu_ref()->attn_absorbed(orf, ql, qp, cache, stride, cache + C, stride, T, S, H, C, R, scale);
        dbuf dql = dbf16(ql, T * H * C), dqp = dbf16(qp, T * H * R), dc = dbf16(cache, S * stride);
        dbuf dout = dnew((size_t)(T * H * C) * 2);
        const fw_bf16 *cp = dp(dc);
        char shape[128];
        snprintf(shape, sizeof shape, "T %lld S %lld H %lld C %lld R %lld", (long long)T, (long long)S, (long long)H,
                 (long long)C, (long long)R);
        if (op_ok(fw_cuda_attn_absorbed(&ctx, dp(dout), dp(dql), dp(dqp), cp, stride, cp + C, stride, T, S, H, C, R, scale),
                  shape)) {
            get_bf16(o, dout, T * H * C);
            compare("attn_absorbed", shape, "-", o, orf, T * H * C, NMSE_BF16);
        }
        check_guards(dout, "attn_absorbed", shape);
        dfree(&dql);
        dfree(&dqp);
        dfree(&dc);
        dfree(&dout);
        free(ql);
        free(qp);
        free(cache);
        free(orf);
        free(o);
    }
}

/* ---- matmul ---- */

/* x (T, K) quantized as the GPU's FP8 path does (per token per 128 channels, scale
 * amax / 448, e4m3 round to nearest even) and dequantized: the reference's input for
 * the cuBLASLt FP8 path. */
static void quant_act_ref(float *xq, const float *x, int64_t T, int64_t K) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t k0 = 0; k0 < K; k0 += 128) {
            int64_t k1 = k0 + 128 < K ? k0 + 128 : K;
            float amax = 0;
            for (int64_t k = k0; k < k1; k++) amax = fabsf(x[t * K + k]) > amax ? fabsf(x[t * K + k]) : amax;
            float s = amax / 448.0f;
            for (int64_t k = k0; k < k1; k++)
                xq[t * K + k] = amax > 0 ? fw_fp8e4m3_to_f32(fw_f32_to_fp8e4m3(x[t * K + k] / s)) * s : 0.0f;
        }
}

enum { MM, MM_F32, MM_XW };

static int run_mm(int mode, dbuf y, dbuf x, const fw_weight *dw, int64_t T) {
    if (mode == MM) return fw_cuda_matmul(&ctx, dp(y), dp(x), dw, T);
    if (mode == MM_F32) return fw_cuda_matmul_f32(&ctx, dp(y), dp(x), dw, T);
    return fw_cuda_matmul_xw(&ctx, dp(y), dp(x), dw, T);
}

/* matmul (or matmul_f32, matmul_xw) of the host view hv / device view dv, on the
 * automatic path and, when that was cuBLASLt, again on the own kernels. */
static void check_mm(int mode, const char *label, const fw_weight *hv, const fw_weight *dv, int64_t T) {
    const fw_ops *ref = fw_ops_cpu_ref();
    int64_t in = mode == MM_XW ? hv->rows : hv->cols, out = mode == MM_XW ? hv->cols : hv->rows;
    bool f32 = mode == MM_F32;
    size_t es = f32 ? 4 : 2;
    float *x = hrand_bf16(T * in, 1.0f), *yr = hnew(T * out), *y = hnew(T * out);
    (mode == MM_XW ? ref->matmul_xw : ref->matmul)(yr, x, hv, T);
    dbuf dx = dbf16(x, T * in), dy = dnew((size_t)(T * out) * es);
    const char *op = mode == MM ? "matmul" : mode == MM_F32 ? "matmul_f32" : "matmul_xw";
    char shape[160];
    snprintf(shape, sizeof shape, "%s %s [%lld x %lld] ld %lld at (%lld, %lld) T %lld", label, tname(hv->type),
             (long long)hv->rows, (long long)hv->cols, (long long)dv->ld, (long long)hv->r0, (long long)hv->c0,
             (long long)T);
    for (int pass = 0; pass < 2; pass++) {
        ctx.opt.mm_policy = pass == 0 ? FW_CUDA_MM_AUTO : FW_CUDA_MM_OWN;
        dfill(dy);
        int st = run_mm(mode, dy, dx, dv, T);
        fw_cuda_mm_path path = ctx.last_mm_path;
        if (op_ok(st, shape)) {
            if (f32) CU(fw_cuda_download(&ctx, y, dp(dy), (size_t)(T * out) * 4));
            else get_bf16(y, dy, T * out);
            const char *pn = mode == MM_XW ? "own" : path_name(path);
            if (path == FW_CUDA_MM_LT_FP8) {
                float *xq = hnew(T * in), *yq = hnew(T * out);
                quant_act_ref(xq, x, T, in);
                ref->matmul(yq, xq, hv, T);
                compare(op, shape, pn, y, yq, T * out, NMSE_BF16);
                compare("  vs exact x", shape, pn, y, yr, T * out, NMSE_FP8_ACT);
                free(xq);
                free(yq);
            } else {
                compare(op, shape, pn, y, yr, T * out, f32 ? NMSE_F32 : NMSE_BF16);
            }
        }
        check_guards(dy, op, shape);
        /* Again on the own kernels unless they just ran (also after a cuBLASLt error). */
        if (mode == MM_XW || path == FW_CUDA_MM_GEMV || path == FW_CUDA_MM_TILED) break;
    }
    ctx.opt.mm_policy = FW_CUDA_MM_AUTO;
    dfree(&dx);
    dfree(&dy);
    free(x);
    free(yr);
    free(y);
}

/* Every T on a whole uploaded parent. */
static void mm_parent(int mode, fw_wtype ty, int64_t rows, int64_t cols, int64_t host_ld, int64_t dev_ld,
                      const int64_t *Ts, int nT) {
    hw p = hw_make(ty, rows, cols, host_ld);
    fw_cuda_weight d;
    CU(fw_cuda_weight_upload(&ctx, &d, &p.w, dev_ld));
    for (int i = 0; i < nT; i++) check_mm(mode, "whole", &p.w, &d.w, Ts[i]);
    fw_cuda_weight_free(&d);
    hw_free(&p);
}

static void test_matmul(void) {
    const int64_t Ts[] = {1, 3, 4, 37, 130}, Tbig[] = {1, 4, 37}, Tv[] = {1, 4, 37};
    const int64_t shapes[][2] = {{48, 96}, {96, 48}, {144, 96}, {96, 144}, {7, 5}, {129, 200}, {256, 512}, {512, 256}};
    for (int ty = 0; ty < 3; ty++) {
        fw_wtype t = (fw_wtype)ty;
        for (int s = 0; s < 8; s++) mm_parent(MM, t, shapes[s][0], shapes[s][1], shapes[s][1], 0, Ts, 5);
        mm_parent(MM, t, 300, 257, 260, 263, Ts, 5); /* odd device ld */
        /* Views of a device parent [768 x 1024]: on the 128 grid spanning all columns
         * (FP8 scales used in place), on the grid with fewer columns (scales
         * repacked), off the grid, an odd column origin (unaligned rows), a sliver. */
        hw p = hw_make(t, 768, 1024, 1024);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        const int64_t views[][4] = {{128, 384, 0, 1024}, {256, 256, 384, 512}, {70, 200, 100, 333}, {129, 571, 1, 899},
                                    {255, 2, 127, 130}};
        for (int v = 0; v < 5; v++) {
            fw_weight hv = fw_weight_view(&p.w, views[v][0], views[v][1], views[v][2], views[v][3]);
            fw_weight dv = fw_weight_view(&d.w, views[v][0], views[v][1], views[v][2], views[v][3]);
            for (int i = 0; i < 3; i++) check_mm(MM, "view", &hv, &dv, Tv[i]);
        }
        fw_cuda_weight_free(&d);
        /* A host view uploaded on its own: the copy keeps the origin's offset in its block. */
        fw_weight hv = fw_weight_view(&p.w, 70, 200, 100, 336);
        CU(fw_cuda_weight_upload(&ctx, &d, &hv, 0));
        for (int i = 0; i < 3; i++) check_mm(MM, "uploaded view", &hv, &d.w, Tv[i]);
        fw_cuda_weight_free(&d);
        hw_free(&p);
    }
    /* DeepSeek-sized operands (kv_a_proj-like and an o_proj-like slice). */
    for (int ty = 1; ty < 3; ty++) {
        mm_parent(MM, (fw_wtype)ty, 576, 7168, 7168, 0, Tbig, 3);
        const int64_t Tl[] = {1, 130};
        mm_parent(MM, (fw_wtype)ty, 7168, 512, 512, 0, Tl, 2);
    }
    /* fp32 output: the router (bf16 [E x D]) and the other types on small shapes. */
    const int64_t Tr[] = {1, 37};
    mm_parent(MM_F32, FW_WTYPE_BF16, 256, 7168, 7168, 0, Tr, 2);
    const int64_t Ts3[] = {3, 37};
    mm_parent(MM_F32, FW_WTYPE_BF16, 16, 48, 48, 0, Ts3, 2);
    mm_parent(MM_F32, FW_WTYPE_FP8, 96, 144, 144, 0, Ts3, 2);
    mm_parent(MM_F32, FW_WTYPE_F32, 48, 96, 96, 0, Ts3, 2);
}

/* INT4: the own GEMV's 128-column chunks (K, the view's columns and the group
 * whole 128s: an odd chunk count, several chunks a group), its 16-byte pieces
 * (whole 32-groups), its single-value form (groups of 8, odd column origins), K
 * slices and clusters, and cuBLASLt on the dequantized copy past 8 rows. */
static void test_matmul_int4(void) {
    const int64_t Ts[] = {1, 2, 3, 8, 9, 37, 130};
    const int64_t shapes[][3] = {{48, 96, 32},   {96, 256, 32},     {96, 256, 128}, {7, 40, 8},
                                 {129, 200, 8},  {256, 512, 128},   {576, 7168, 128}, {7168, 512, 32},
                                 {24, 4096, 64}, {40, 384, 128},    {72, 1024, 256}, {1536, 7168, 128}};
    for (int s = 0; s < 12; s++) {
        hw p = hw_make_int4(shapes[s][0], shapes[s][1], shapes[s][2]);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        for (int i = 0; i < 7; i++) check_mm(MM, "whole", &p.w, &d.w, Ts[i]);
        check_mm(MM_F32, "whole", &p.w, &d.w, 1);
        check_mm(MM_XW, "whole", &p.w, &d.w, 3);
        fw_cuda_weight_free(&d);
        hw_free(&p);
    }
    /* Views of a device parent [512 x 1024], groups of 32 and 128: word- and
     * group-aligned columns (chunks where 128s), an origin inside a word, a
     * sliver; and a host view uploaded. */
    hw p;
    fw_cuda_weight d;
    for (int g = 128; g >= 32; g /= 4) {
        p = hw_make_int4(512, 1024, g);
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        const int64_t views[][4] = {{128, 256, 256, 512}, {70, 200, 100, 333}, {3, 5, 64, 64}, {0, 130, 512, 512}};
        for (int v = 0; v < 4; v++) {
            fw_weight hv = fw_weight_view(&p.w, views[v][0], views[v][1], views[v][2], views[v][3]);
            fw_weight dv = fw_weight_view(&d.w, views[v][0], views[v][1], views[v][2], views[v][3]);
            for (int i = 0; i < 4; i++) check_mm(MM, "view", &hv, &dv, Ts[i * 2]);
        }
        fw_cuda_weight_free(&d);
        if (g == 128) hw_free(&p);
    }
    fw_weight hv = fw_weight_view(&p.w, 70, 200, 100, 336);
    CU(fw_cuda_weight_upload(&ctx, &d, &hv, 0));
    for (int i = 0; i < 4; i++) check_mm(MM, "uploaded view", &hv, &d.w, Ts[i * 2]);
    fw_cuda_weight_free(&d);
    hw_free(&p);
}

static void test_matmul_xw(void) {
    const int64_t Ts[] = {1, 3, 37, 130};
    for (int ty = 0; ty < 3; ty++) {
        fw_wtype t = (fw_wtype)ty;
        /* kv_b_proj-like [H * 256 x 512], H = 4: W_UK of head h = rows [256 h, 256 h + 128). */
        hw p = hw_make(t, 1024, 512, 512);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        for (int h = 0; h < 4; h += 3) {
            fw_weight hv = fw_weight_view(&p.w, 256 * h, 128, 0, 512), dv = fw_weight_view(&d.w, 256 * h, 128, 0, 512);
            for (int i = 0; i < 4; i++) check_mm(MM_XW, "W_UK", &hv, &dv, Ts[i]);
        }
        fw_cuda_weight_free(&d);
        hw_free(&p);
        const int64_t Tsmall[] = {1, 37};
        mm_parent(MM_XW, t, 48, 96, 96, 0, Tsmall, 2);
        mm_parent(MM_XW, t, 129, 200, 203, 0, Tsmall, 2);
        p = hw_make(t, 768, 1024, 1024);
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        fw_weight hv = fw_weight_view(&p.w, 70, 200, 100, 333), dv = fw_weight_view(&d.w, 70, 200, 100, 333);
        for (int i = 0; i < 2; i++) check_mm(MM_XW, "view", &hv, &dv, Tsmall[i]);
        fw_cuda_weight_free(&d);
        hw_free(&p);
    }
}

/* ---- timing (printed, not asserted) ---- */

static void time_one(const char *label, const fw_weight *dw, dbuf x, dbuf y, int64_t M, fw_cuda_mm_policy pol,
                     double wbytes, const char *ceiling) {
    ctx.opt.mm_policy = pol;
    int st = FW_CUDA_OK;
    for (int i = 0; i < 3 && st == FW_CUDA_OK; i++) st = fw_cuda_matmul(&ctx, dp(y), dp(x), dw, M); /* warm-up, plans */
    if (st != FW_CUDA_OK || fw_cuda_sync(&ctx) != FW_CUDA_OK) {
        CHECK(0, "timing %s M %lld: %s", label, (long long)M, ctx.err);
        ctx.opt.mm_policy = FW_CUDA_MM_AUTO;
        return;
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const int iters = 20;
    cudaEventRecord(e0, ctx.stream);
    for (int i = 0; i < iters && st == FW_CUDA_OK; i++) st = fw_cuda_matmul(&ctx, dp(y), dp(x), dw, M);
    cudaEventRecord(e1, ctx.stream);
    float ms = 0;
    if (st == FW_CUDA_OK && fw_cuda_sync(&ctx) == FW_CUDA_OK && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess) {
        double us = ms * 1000.0 / iters;
        double flops = 2.0 * (double)M * (double)dw->rows * (double)dw->cols;
        printf("%-16s %-30s M %4lld %-9s %8.1f us  %6.0f GB/s of weights  %7.1f TFLOP/s   (%s)\n", "timing", label,
               (long long)M, path_name(ctx.last_mm_path), us, wbytes / us * 1e-3, flops / us * 1e-6, ceiling);
    } else {
        CHECK(0, "timing %s M %lld: %s", label, (long long)M, ctx.err);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    ctx.opt.mm_policy = FW_CUDA_MM_AUTO;
}

static void test_timing(void) {
    const int64_t N = 18432, K = 7168, Ms[] = {1, 4, 64};
    float *x = hrand_bf16(64 * K, 1.0f);
    dbuf dx = dbf16(x, 64 * K), dy = dnew((size_t)(64 * N) * 2);
    const char *ceil_bf16[] = {"README: cuBLAS bf16 M=1 71.7 us, 3684 GB/s", "README: copy 4278 GB/s",
                               "README: cuBLAS bf16 M=64 68.7 us"};
    const char *ceil_fp8[] = {"reference: lt-fp8 M=4 50.4 us", "reference: lt-fp8 M=4 50.4 us, 2.6 TB/s",
                              "README: copy 4278 GB/s"};
    for (int ty = 1; ty < 3; ty++) {
        hw p = hw_make((fw_wtype)ty, N, K, K);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        hw_free(&p);
        double wbytes = (double)N * K * (ty == FW_WTYPE_BF16 ? 2 : 1);
        char label[64];
        for (int i = 0; i < 3; i++) {
            snprintf(label, sizeof label, "%s N %lld K %lld", tname((fw_wtype)ty), (long long)N, (long long)K);
            time_one(label, &d.w, dx, dy, Ms[i], FW_CUDA_MM_AUTO, wbytes, ty == FW_WTYPE_BF16 ? ceil_bf16[i] : ceil_fp8[i]);
        }
        for (int i = 0; i < 3; i++) {
            snprintf(label, sizeof label, "%s N %lld K %lld own", tname((fw_wtype)ty), (long long)N, (long long)K);
            time_one(label, &d.w, dx, dy, Ms[i], FW_CUDA_MM_OWN, wbytes, "own kernels");
        }
        if (ty == FW_WTYPE_FP8) { /* cuBLASLt FP8 at decode's rows too, which AUTO leaves to the GEMV */
            ctx.opt.fp8_gemv_rows = 0;
            for (int i = 0; i < 2; i++) {
                snprintf(label, sizeof label, "fp8 N %lld K %lld lt", (long long)N, (long long)K);
                time_one(label, &d.w, dx, dy, Ms[i], FW_CUDA_MM_AUTO, wbytes, "cuBLASLt FP8");
            }
            ctx.opt.fp8_gemv_rows = FW_CUDA_FP8_GEMV_ROWS;
        }
        check_guards(dy, "timing", label);
        fw_cuda_weight_free(&d);
    }
    /* DeepSeek-V3's decode shapes, FP8 at one row: the GEMV against cuBLASLt. */
    const int64_t shapes[][2] = {{1536, 7168}, {576, 7168}, {24576, 1536}, {7168, 16384}, {2048, 7168}, {7168, 2048}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t n = shapes[i][0], k = shapes[i][1];
        hw p = hw_make(FW_WTYPE_FP8, n, k, k);
        fw_cuda_weight d;
        CU(fw_cuda_weight_upload(&ctx, &d, &p.w, 0));
        hw_free(&p);
        float *xs = hrand_bf16(k, 1.0f);
        dbuf sx = dbf16(xs, k), sy = dnew((size_t)n * 2);
        char label[64];
        snprintf(label, sizeof label, "fp8 N %lld K %lld", (long long)n, (long long)k);
        time_one(label, &d.w, sx, sy, 1, FW_CUDA_MM_AUTO, (double)n * k, "decode shape");
        ctx.opt.fp8_gemv_rows = 0;
        time_one(label, &d.w, sx, sy, 1, FW_CUDA_MM_AUTO, (double)n * k, "decode shape, cuBLASLt");
        ctx.opt.fp8_gemv_rows = FW_CUDA_FP8_GEMV_ROWS;
        fw_cuda_weight_free(&d);
        /* INT4 of group 128 (and 32) on the same shape: packed words and scales */
        for (int g = 128; g >= 32; g /= 4) {
            hw q = hw_make_int4(n, k, g);
            CU(fw_cuda_weight_upload(&ctx, &d, &q.w, 0));
            hw_free(&q);
            snprintf(label, sizeof label, "int4 g%d N %lld K %lld", g, (long long)n, (long long)k);
            time_one(label, &d.w, sx, sy, 1, FW_CUDA_MM_AUTO, (double)n * k / 2 + (double)n * (k / g) * 2, "decode shape");
            fw_cuda_weight_free(&d);
        }
        dfree(&sx), dfree(&sy), free(xs);
    }
    dfree(&dx);
    dfree(&dy);
    free(x);
}

/* argv[1] "indexer": only the V3.2 indexer ops (a quick rerun while working on them). */
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = 0;
    fw_cuda_device_count(&n);
    if (n < 1) SKIP("no CUDA device (or no driver)");
    if (fw_cuda_ctx_init(&ctx, 0, NULL) != FW_CUDA_OK) {
        fprintf(stderr, "fw_cuda_ctx_init: %s\n", ctx.err);
        return 1;
    }
    printf("device 0: %s (sm_%d%d)\n", ctx.device_name, ctx.cc_major, ctx.cc_minor);
    if (argc > 1 && !strcmp(argv[1], "indexer")) {
        check_failures_ += test_indexer_ops();
        fw_cuda_ctx_free(&ctx);
        return check_result();
    }
    test_convert();
    test_embed();
    test_rmsnorm();
    test_rope();
    test_elementwise();
    test_route();
    test_attn();
    test_matmul();
    test_matmul_int4();
    test_matmul_xw();
    check_failures_ += test_model_ops();
    check_failures_ += test_indexer_ops();
    if (!getenv("FW_TEST_NO_TIMING")) test_timing();
    printf("%d comparisons; worst NMSE of the bf16 outputs %.3e (bounds %.0e, %.0e under 64 outputs)\n", n_lines, worst_bf16,
           NMSE_BF16, NMSE_BF16_FEW);
    fw_cuda_ctx_free(&ctx);
    return check_result();
}
