#include "runtime/model/rope.h"

#include <math.h>

static double yarn_get_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* The dimension index at which a frequency completes `rotations` turns over the
 * original context (YaRN's correction dimension). */
static double correction_dim(double rotations, double dim, double base, double orig_max) {
    return dim * log(orig_max / (rotations * 2 * M_PI)) / (2 * log(base));
}

void fw_rope_inv_freq(const fw_config *c, float *inv_freq, float *mscale) {
    const int64_t dim = c->qk_rope_head_dim;
    const double base = c->rope_theta;
    *mscale = 1.0f;
    for (int64_t i = 0; i < dim / 2; i++) inv_freq[i] = (float)pow(base, -(double)(2 * i) / (double)dim);
    if (!c->yarn.enabled) return;

    const fw_yarn *y = &c->yarn;
    double low = floor(correction_dim(y->beta_fast, (double)dim, base, (double)y->original_max_position));
    double high = ceil(correction_dim(y->beta_slow, (double)dim, base, (double)y->original_max_position));
    if (low < 0) low = 0;
    if (high > dim - 1) high = (double)(dim - 1);
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; i++) {
        double extrapolated = pow(base, -(double)(2 * i) / (double)dim);
        double interpolated = extrapolated / y->factor;
        double ramp = ((double)i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        inv_freq[i] = (float)(interpolated * ramp + extrapolated * (1 - ramp));
    }
    if (y->mscale != 0 && y->mscale_all_dim != 0)
        *mscale = (float)(yarn_get_mscale(y->factor, y->mscale) / yarn_get_mscale(y->factor, y->mscale_all_dim));
    else
        *mscale = (float)yarn_get_mscale(y->factor, 1.0);
}

void fw_rope_tables(const float *inv_freq, float mscale, int64_t dim, int64_t pos0, int64_t T,
                    float *cos_tab, float *sin_tab) {
    const int64_t half = dim / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            double angle = (double)(pos0 + t) * (double)inv_freq[i];
            cos_tab[t * half + i] = (float)(cos(angle) * mscale);
            sin_tab[t * half + i] = (float)(sin(angle) * mscale);
        }
}
