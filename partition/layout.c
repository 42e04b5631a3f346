#include "partition/layout.h"

int fw_layout_stage_of_layer(const fw_layout *l, int layer) {
    for (int s = 0; s < l->pp; s++)
        if (layer >= l->stages[s].first_layer && layer < l->stages[s].first_layer + l->stages[s].n_layers)
            return s;
    return -1;
}

void fw_layout_experts(const fw_layout *l, const fw_config *c, int tp_rank, int *first, int *n) {
    /* floor(e * tp / E) == r  <=>  ceil(r E / tp) <= e < ceil((r + 1) E / tp). */
    const int64_t E = c->n_routed_experts, tp = l->tp;
    int64_t a = (tp_rank * E + tp - 1) / tp, b = ((tp_rank + 1) * E + tp - 1) / tp;
    *first = (int)a;
    *n = (int)(b - a);
}
