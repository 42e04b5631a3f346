/* /metrics in Prometheus' text format (version 0.0.4). */
#include <stdio.h>
#include <stdlib.h>

#include "runtime/serve/serve.h"

static const double bounds[FW_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

void fw_hist_add(fw_hist *h, double v) {
    int i = 0;
    while (i < FW_HIST_BUCKETS && v > bounds[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

static void hist(FILE *f, const char *name, const char *help, const fw_hist *h) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t acc = 0;
    for (int i = 0; i < FW_HIST_BUCKETS; i++) {
        acc += h->count[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)acc);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, (unsigned long long)h->n, name, h->sum,
            name, (unsigned long long)h->n);
}

/* Joules by meter and domain since serve started (a counter, so J per token
 * is rate(joules) / rate(furrow_generation_tokens_total)), and per meter
 * whether it is read, with the reason when it is not. */
static void energy(FILE *f, fw_energy *m) {
    if (!m) return;
    fprintf(f, "# HELP furrow_energy_joules_total Energy of this node (rank 0's) since serve started, by meter "
               "(rapl: CPU zones, nvml: GPUs) and domain; node-wide, other work on the node included.\n"
               "# TYPE furrow_energy_joules_total counter\n");
    fw_energy_sample(m);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n; i++)
        fprintf(f, "furrow_energy_joules_total{meter=\"%s\",domain=\"%s\"} %.6f\n",
                m->d[i].source == FW_ENERGY_RAPL ? "rapl" : "nvml", m->d[i].name, m->d[i].joules);
    fprintf(f, "# HELP furrow_energy_meter_available 1 when the meter's counters are read; 0 with the reason.\n"
               "# TYPE furrow_energy_meter_available gauge\n");
    const char *why[2] = {m->rapl_why, m->nvml_why}, *name[2] = {"rapl", "nvml"};
    for (int k = 0; k < 2; k++) {
        if (!why[k][0]) {
            fprintf(f, "furrow_energy_meter_available{meter=\"%s\"} 1\n", name[k]);
            continue;
        }
        fprintf(f, "furrow_energy_meter_available{meter=\"%s\",reason=\"", name[k]);
        for (const char *c = why[k]; *c; c++) fputc(*c == '"' || *c == '\\' || *c == '\n' ? '\'' : *c, f);
        fprintf(f, "\"} 0\n");
    }
    pthread_mutex_unlock(&m->mu);
}

char *fw_serve_metrics(const fw_serve *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fprintf(f, "# HELP furrow_requests_total HTTP requests answered, by status.\n"
               "# TYPE furrow_requests_total counter\n");
    for (int st = 100; st < 600; st++)
        if (s->status_count[st]) fprintf(f, "furrow_requests_total{status=\"%d\"} %llu\n", st,
                                         (unsigned long long)s->status_count[st]);
    fprintf(f,
            "# HELP furrow_prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE furrow_prompt_tokens_total counter\nfurrow_prompt_tokens_total %llu\n"
            "# HELP furrow_generation_tokens_total Tokens generated.\n"
            "# TYPE furrow_generation_tokens_total counter\nfurrow_generation_tokens_total %llu\n"
            "# HELP furrow_queue_depth Requests waiting to run.\n"
            "# TYPE furrow_queue_depth gauge\nfurrow_queue_depth %d\n"
            "# HELP furrow_running_requests Requests in the running batch.\n"
            "# TYPE furrow_running_requests gauge\nfurrow_running_requests %d\n"
            "# HELP furrow_kv_blocks_used Blocks of the paged KV cache held by requests.\n"
            "# TYPE furrow_kv_blocks_used gauge\nfurrow_kv_blocks_used %lld\n"
            "# HELP furrow_kv_blocks_total Blocks of the paged KV cache.\n"
            "# TYPE furrow_kv_blocks_total gauge\nfurrow_kv_blocks_total %lld\n"
            "# HELP furrow_http_connections Open HTTP connections (main and admin listeners).\n"
            "# TYPE furrow_http_connections gauge\nfurrow_http_connections %d\n"
            "# HELP furrow_http_header_timeouts_total Connections closed by --header-timeout.\n"
            "# TYPE furrow_http_header_timeouts_total counter\nfurrow_http_header_timeouts_total %llu\n",
            (unsigned long long)s->prompt_tokens, (unsigned long long)s->generated_tokens, s->inbox_len + s->queued,
            s->running, (long long)s->kv_used, (long long)s->kv_total, s->http_open,
            (unsigned long long)s->header_timeouts);
    fprintf(f,
            "# HELP furrow_prefix_cache_queries_total Prompt tokens looked up in the prefix cache (at admission).\n"
            "# TYPE furrow_prefix_cache_queries_total counter\nfurrow_prefix_cache_queries_total %llu\n"
            "# HELP furrow_prefix_cache_hits_total Of those, tokens found cached (their prefill skipped).\n"
            "# TYPE furrow_prefix_cache_hits_total counter\nfurrow_prefix_cache_hits_total %llu\n"
            "# HELP furrow_prefix_cache_hit_rate Hits over queries since the start (0 before any query).\n"
            "# TYPE furrow_prefix_cache_hit_rate gauge\nfurrow_prefix_cache_hit_rate %.6g\n"
            "# HELP furrow_prefix_cache_blocks KV blocks holding cached tokens, in use or not.\n"
            "# TYPE furrow_prefix_cache_blocks gauge\nfurrow_prefix_cache_blocks %lld\n"
            "# HELP furrow_prefix_cache_evictions_total Cached blocks taken for other tokens.\n"
            "# TYPE furrow_prefix_cache_evictions_total counter\nfurrow_prefix_cache_evictions_total %llu\n",
            (unsigned long long)s->prefix_queried, (unsigned long long)s->prefix_hits,
            s->prefix_queried ? (double)s->prefix_hits / (double)s->prefix_queried : 0.0, (long long)s->prefix_blocks,
            (unsigned long long)s->prefix_evictions);
    fprintf(f,
            "# HELP furrow_json_requests_total Requests with JSON output (response_format), counted as they end.\n"
            "# TYPE furrow_json_requests_total counter\nfurrow_json_requests_total %llu\n"
            "# HELP furrow_json_mask_cache_hits_total Their tokens whose mask was cached.\n"
            "# TYPE furrow_json_mask_cache_hits_total counter\nfurrow_json_mask_cache_hits_total %llu\n"
            "# HELP furrow_json_mask_cache_misses_total Their tokens whose mask took a walk of the vocabulary trie.\n"
            "# TYPE furrow_json_mask_cache_misses_total counter\nfurrow_json_mask_cache_misses_total %llu\n"
            "# HELP furrow_json_mask_seconds_total Time spent on their masks (look-ups, walks, applying them).\n"
            "# TYPE furrow_json_mask_seconds_total counter\nfurrow_json_mask_seconds_total %.9g\n",
            (unsigned long long)s->json_requests, (unsigned long long)s->json_mask_hits,
            (unsigned long long)s->json_mask_misses, s->json_mask_s);
    energy(f, s->energy);
    if (s->spec_k > 0) {
        static const char *const what[3][2] = {
            {"furrow_spec_draft_tokens_total", "Draft tokens of the MTP layer verified, by position in the step."},
            {"furrow_spec_accepted_tokens_total", "Of those, accepted (greedy chose the same token)."},
            {"furrow_spec_acceptance_rate", "Accepted over verified since the start (0 before any)."}};
        for (int m = 0; m < 3; m++) {
            fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", what[m][0], what[m][1], what[m][0], m < 2 ? "counter" : "gauge");
            for (int j = 0; j < s->spec_k && j < 2; j++) {
                const uint64_t p = s->spec_proposed[j], a = s->spec_accepted[j];
                if (m < 2) fprintf(f, "%s{position=\"%d\"} %llu\n", what[m][0], j + 1, (unsigned long long)(m ? a : p));
                else fprintf(f, "%s{position=\"%d\"} %.6g\n", what[m][0], j + 1, p ? (double)a / (double)p : 0.0);
            }
        }
    }
    hist(f, "furrow_step_seconds", "Time of one engine step (all ranks).", &s->step_s);
    hist(f, "furrow_time_to_first_token_seconds", "From a request's arrival to its first token.", &s->ttft_s);
    fclose(f);
    return buf;
}
