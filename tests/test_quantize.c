/* The convert-time quantizer (io/quantize.h) against compressed-tensors' formula
 * written out here independently: per row and group, scale = bf16(absmax / 7.5)
 * (INT4) or bf16(absmax / 127.5) (INT8), at least FLT_EPSILON; q = w / scale
 * rounded half to even, clamped to [-8, 7] or [-128, 127]. Checked: every q and
 * scale, the INT4 words against the documented nibble order (and their reading
 * by kernels/weight.c), the error of each element (half a step, a little more
 * where the largest positive value is clamped), all-zero groups, the range's
 * extremes, a tensor whose groups quantize without error, and non-finite input.
 * Also the spec a user writes (io/quant_spec.h): its parts and what it covers. */
#include "io/quant_spec.h"
#include "io/quantize.h"
#include "kernels/ops.h"
#include "tests/check.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The formula for one group; q[G]. */
static uint16_t ref_group(const float *w, int64_t G, int qmin, int qmax, int *q) {
    float amax = 0;
    for (int64_t j = 0; j < G; j++) amax = fmaxf(amax, fabsf(w[j]));
    float s = amax / ((float)(qmax - qmin) * 0.5f);
    uint16_t sb = fw_f32_to_bf16(fmaxf(s, FLT_EPSILON));
    const float sf = fw_bf16_to_f32(sb);
    for (int64_t j = 0; j < G; j++) {
        double v = nearbyint((double)(w[j] / sf));   /* half to even */
        q[j] = (int)fmin(fmax(v, qmin), qmax);
    }
    return sb;
}

/* Quantizes w [rows, cols] both ways and compares; returns the largest error
 * in steps (|w - q * s| / s). */
static double check_tensor(const float *w, int64_t rows, int64_t cols, int64_t G, int bits, const char *what) {
    const int qmin = bits == 4 ? -8 : -128, qmax = bits == 4 ? 7 : 127;
    const int64_t ng = cols / G;
    uint32_t *packed = calloc((size_t)(rows * cols / 8) + 1, 4);
    int8_t *q8 = calloc((size_t)(rows * cols) + 1, 1);
    uint16_t *scale = calloc((size_t)(rows * ng) + 1, 2);
    int *q = malloc((size_t)G * sizeof *q);
    fw_quant_error err;
    bool ok = bits == 4 ? fw_quantize_int4(w, rows, cols, G, packed, scale, &err)
                        : fw_quantize_int8(w, rows, cols, G, q8, scale, &err);
    CHECK(ok, "%s: quantization refused finite input", what);
    /* The weight as a reader sees it. */
    const fw_weight fw = {.type = bits == 4 ? FW_WTYPE_INT4 : FW_WTYPE_INT8, .rows = rows, .cols = cols,
                          .ld = bits == 4 ? cols / 8 : cols, .data = bits == 4 ? (const void *)packed : (const void *)q8,
                          .gscale = scale, .scale_ld = ng, .group = G};
    int bad_q = 0, bad_s = 0, bad_deq = 0;
    double worst = 0, e2 = 0, r2 = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const float *x = w + r * cols + g * G;
            uint16_t sb = ref_group(x, G, qmin, qmax, q);
            bad_s += scale[r * ng + g] != sb;
            const float s = fw_bf16_to_f32(sb);
            for (int64_t j = 0; j < G; j++) {
                const int64_t c = g * G + j;
                int got;
                if (bits == 4) { /* by bytes: column c in the low nibble of byte c / 2 when c is even */
                    const uint8_t b = ((const uint8_t *)(packed + r * (cols / 8)))[c / 2];
                    got = ((c % 2 ? b >> 4 : b) & 15) - 8;
                } else {
                    got = q8[r * cols + c];
                }
                bad_q += got != q[j];
                bad_deq += fw_weight_get(&fw, r, c) != (float)q[j] * s;
                const double d = fabs((double)x[j] - (double)q[j] * s);
                worst = fmax(worst, d / s);
                e2 += d * d, r2 += (double)x[j] * x[j];
            }
        }
    CHECK(bad_q == 0 && bad_s == 0 && bad_deq == 0, "%s: %d values, %d scales, %d dequantized elements differ", what,
          bad_q, bad_s, bad_deq);
    CHECK(fabs(err.err2 - e2) <= 1e-9 * (e2 + 1e-30) && fabs(err.ref2 - r2) <= 1e-9 * r2,
          "%s: reported error sums %g / %g, recomputed %g / %g", what, err.err2, err.ref2, e2, r2);
    free(packed);
    free(q8);
    free(scale);
    free(q);
    return worst;
}

static void test_random(void) {
    /* Normal-ish weights of a few magnitudes; groups of 8 to whole rows. */
    const int64_t rows = 37, cols = 384;
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++)
        w[i] = (check_rng_uniform() + check_rng_uniform() + check_rng_uniform()) * ldexpf(1.0f, (int)(i / cols % 9) - 6);
    const int64_t Gs[] = {8, 32, 128, 384};
    for (int k = 0; k < 4; k++) {
        char what[64];
        snprintf(what, sizeof what, "int4 group %lld", (long long)Gs[k]);
        double worst = check_tensor(w, rows, cols, Gs[k], 4, what);
        /* Half a step, and at most 7.5 * (1 + 2^-8) - 7 at a clamped maximum. */
        CHECK(worst <= 0.5 + 7.5 / 256 + 1e-6, "%s: an element is %.4f steps off", what, worst);
    }
    double worst = check_tensor(w, rows, cols, cols, 8, "int8 per channel");
    CHECK(worst <= 0.5 + 127.5 / 256 + 1e-6, "int8: an element is %.4f steps off", worst);
    check_tensor(w, rows, cols, 96, 8, "int8 group 96");
    free(w);
}

static void test_edges(void) {
    /* A zero row: scale FLT_EPSILON, every q 0, dequantized exactly 0. */
    float z[64] = {0};
    uint32_t p[8];
    uint16_t s[2];
    int8_t q8[64];
    fw_quant_error err;
    CHECK(fw_quantize_int4(z, 1, 64, 32, p, s, &err), "zero row refused");
    CHECK(s[0] == fw_f32_to_bf16(FLT_EPSILON) && s[1] == s[0], "zero group's scale is %g, not FLT_EPSILON",
          fw_bf16_to_f32(s[0]));
    for (int i = 0; i < 8; i++) CHECK(p[i] == 0x88888888u, "zero row: word %d is 0x%08X", i, p[i]);
    CHECK(fw_quantize_int8(z, 1, 64, 64, q8, s, &err) && err.err2 == 0 && err.ref2 == 0, "int8 zero row");
    for (int i = 0; i < 64; i++) CHECK(q8[i] == 0, "int8 zero row: q[%d] = %d", i, q8[i]);

    /* The extremes: +a lands on 7.5 (127.5) and is clamped to 7 (127); -a on -7.5
     * (-127.5), which rounds half to even to -8 (-128). The words of compressed-
     * tensors' test vectors come out of values that quantize to them. */
    float x[8] = {-7.5f, -6.5f, -5.2f, -4.0f, -3.0f, -2.0f, -1.0f, 7.5f};
    uint16_t s1;
    CHECK(fw_quantize_int4(x, 1, 8, 8, p, &s1, &err), "extremes refused");
    CHECK(fw_bf16_to_f32(s1) == 1.0f, "scale of absmax 7.5 is %g", fw_bf16_to_f32(s1));
    const int want4[8] = {-8, -6, -5, -4, -3, -2, -1, 7};
    for (int k = 0; k < 8; k++) CHECK(fw_int4_get(p[0], k) == want4[k], "int4 column %d: %d, want %d", k, fw_int4_get(p[0], k), want4[k]);
    float v1[8] = {-8, -7, -6, -5, -4, -3, -2, -1};
    for (int k = 0; k < 8; k++) v1[k] *= 7.5f / 8;   /* absmax 7.5: scale 1 */
    CHECK(fw_quantize_int4(v1, 1, 8, 8, p, &s1, &err) && p[0] == 1985229328u, "test vector 1 packs to %u", p[0]);
    float v2[8] = {1, 2, 3, 4, -7.5f, -7.5f, -7.5f, -7.5f};
    CHECK(fw_quantize_int4(v2, 1, 8, 8, p, &s1, &err) && p[0] == 52137u, "test vector 2 packs to %u", p[0]);
    float y[4] = {127.5f, -127.5f, 0.5f, 1.5f};
    CHECK(fw_quantize_int8(y, 1, 4, 4, q8, &s1, &err), "int8 extremes refused");
    CHECK(fw_bf16_to_f32(s1) == 1.0f && q8[0] == 127 && q8[1] == -128 && q8[2] == 0 && q8[3] == 2,
          "int8 extremes: scale %g, q %d %d %d %d", fw_bf16_to_f32(s1), q8[0], q8[1], q8[2], q8[3]);

    /* A tensor that already is q * s comes back with a new scale, absmax / 7.5:
     * the formula has no fixed points but zero (the absmax element always lands
     * on +-7.5), so "lossless" means this: every element but the group's extreme
     * is reproduced exactly when the values are integers times the new scale. */
    float iq[8] = {-7.5f, -6, -4, -1, 0, 2, 5, 7};
    CHECK(fw_quantize_int4(iq, 1, 8, 8, p, &s1, &err) && fw_bf16_to_f32(s1) == 1.0f, "integer group: scale %g",
          fw_bf16_to_f32(s1));
    CHECK(err.err2 == 0.25, "integer group: error %g, want 0.25 (the extreme's half step alone)", err.err2);

    /* NaN and infinity are refused. */
    float bad[8] = {0, 1, 2, NAN, 4, 5, 6, 7};
    CHECK(!fw_quantize_int4(bad, 1, 8, 8, p, &s1, &err), "NaN accepted");
    bad[3] = INFINITY;
    CHECK(!fw_quantize_int8(bad, 1, 8, 8, q8, &s1, &err), "infinity accepted");
}

/* Each part of a spec, written back, and the tensors it covers; the head only with `head`. */
static void test_spec(void) {
    static const char *const head = "lm_head.weight", *const mtp_head = "model.layers.61.shared_head.head.weight";
    static const char *const expert = "model.layers.3.mlp.experts.7.up_proj.weight";
    static const char *const attn = "model.layers.3.self_attn.o_proj.weight";
    static const struct {
        const char *in, *out;
        bool head, expert, attn;
    } cases[] = {
        {"int4", "int4,group=128", false, true, true},
        {"int4,head,group=64", "int4,group=64,head", true, true, true},
        {"int4,group=32,experts", "int4,group=32,experts", false, true, false},
        {"int4,experts,head", "int4,group=128,experts,head", true, true, false},
        {"int8,head", "int8,head", true, true, true},
    };
    fw_err e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fw_quant_spec q;
        char back[64];
        CHECK(fw_quant_spec_parse(&q, cases[i].in, &e) == FW_OK, "%s: %s", cases[i].in, e.msg);
        fw_quant_spec_str(&q, back, sizeof back);
        CHECK(!strcmp(back, cases[i].out), "%s written back as %s", cases[i].in, back);
        CHECK(fw_quant_spec_covers(&q, head) == cases[i].head && fw_quant_spec_covers(&q, mtp_head) == cases[i].head,
              "%s: head covered %d", cases[i].in, fw_quant_spec_covers(&q, head));
        CHECK(fw_quant_spec_covers(&q, expert) == cases[i].expert && fw_quant_spec_covers(&q, attn) == cases[i].attn,
              "%s: expert / o_proj covered", cases[i].in);
        CHECK(!fw_quant_spec_covers(&q, "model.embed_tokens.weight") &&
              !fw_quant_spec_covers(&q, "model.layers.3.mlp.gate.weight"), "%s: embeddings or router covered",
              cases[i].in);
    }
    fw_quant_spec q;
    CHECK(fw_quant_spec_parse(&q, "int4,heads", &e) && strstr(e.msg, "unknown part 'heads'"), "int4,heads: %s", e.msg);
}

int main(void) {
    test_random();
    test_edges();
    test_spec();
    return check_result();
}
