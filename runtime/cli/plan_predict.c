/* furrow plan --predict: the performance model's table (partition/perf.h) for
 * the layouts the planner picks on 1, 2, 4... nodes. */
#include "runtime/cli/plan_predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/perf.h"

int fw_plan_predict(const fw_config *c, const fw_plan_request *base, const fw_predict_opts *o, fw_err *e) {
    fw_perf_links L = {0};
    fw_perf_compute C;
    const bool gpu = base->value_bytes == 2;
    if (o->system && fw_perf_links_builtin(&L, o->system, e)) return fw_err_prefix(e, "--system");
    if (o->links && fw_perf_links_load(&L, o->links, e)) return fw_err_prefix(e, "--links");
    if (!o->system && !o->links)
        return fw_errf(e, "--predict needs link figures: --links FILE (furrow bench --comm) or --system h100|h200");
    if (o->compute) {
        if (fw_perf_compute_load(&C, o->compute, e)) return fw_err_prefix(e, "--compute");
    } else if (gpu) {
        fw_perf_compute_builtin(&C, o->system);
    } else {
        return fw_errf(e, "--predict on CPU ranks needs --compute FILE (furrow bench --json)");
    }
    printf("predict: compute %s\n         links %s%s%s\n", C.source, o->system ? L.source : "",
           o->system && o->links ? "; overridden by " : "", o->links ? o->links : "");
    printf("         a step: the stages' layers (per-layer compute of the rank's share) + 2 tp all-reduces a\n"
           "         layer + the embedding's + hidden states between stages + the next tokens' argmax and\n"
           "         broadcast; %s\n",
           gpu ? "one stage runs the batch in one forward, several pass the sequences one by one"
               : "the sequences pass one by one (CPU ranks), the stages overlapping");
    printf("\n%5s  %-14s  %-7s  %6s  %10s  %10s  %10s  %10s  %12s  %10s\n", "nodes", "layout", "phase", "batch",
           "step_ms", "compute_ms", "allred_ms", "p2p_ms", "tokens_s", "latency_ms");
    for (int i = 0; i < o->n_nodes; i++) {
        for (int k = 0; k <= o->n_batches; k++) {
            const bool prefill = k == o->n_batches;
            if (prefill && o->prefill <= 0) break;
            fw_perf_req r = {.prefill = prefill, .batch = prefill ? o->prefill_batch : o->batches[k],
                             .tokens = prefill ? o->prefill : 1, .hidden = c->hidden_size,
                             .value_bytes = gpu ? 2 : 4, .ranks_per_node = base->ranks_per_node,
                             .nics_per_node = o->nics_per_node,
                             .together = gpu};
            /* The layout of this row: its batch's KV cache (the prefill's
             * sequences at least their prompt) must fit as well. */
            fw_plan_request rq = *base;
            rq.world = o->nodes[i] * base->ranks_per_node;
            rq.batch = r.batch;
            if (prefill && rq.context < o->prefill) rq.context = o->prefill;
            fw_layout l;
            fw_err pe = {{0}};
            if (fw_plan(c, &rq, &l, &pe)) {
                /* The planner's reason, up to its first clause. */
                const char *colon = strchr(pe.msg, ':');
                printf("%5d  %-14s  %-7s  %6lld  (no layout: %.*s)\n", o->nodes[i], "-", prefill ? "prefill" : "decode",
                       (long long)r.batch, colon ? (int)(colon - pe.msg) : (int)strlen(pe.msg), pe.msg);
                continue;
            }
            char lay[32];
            snprintf(lay, sizeof lay, "tp%dxpp%dxdp%d", l.tp, l.pp, l.dp);
            fw_perf_step s;
            if (fw_perf_predict(&l, &C, &L, &r, &s, e)) return FW_ERR;
            /* Latency: TPOT of a decode step, TTFT of a prefill. */
            printf("%5d  %-14s  %-7s  %6lld  %10.3f  %10.3f  %10.3f  %10.3f  %12.1f  %10.3f\n", o->nodes[i], lay,
                   prefill ? "prefill" : "decode", (long long)r.batch, s.step_s * 1e3, s.compute_s * 1e3,
                   s.allreduce_s * 1e3, s.p2p_s * 1e3, s.tokens_s, s.step_s * 1e3);
        }
    }
    return FW_OK;
}
