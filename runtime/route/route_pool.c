/* The replica table of furrow route: joining, leaving, least-loaded choice,
 * and the router's own /metrics and /replicas. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/base/clock.h"
#include "runtime/route/route.h"

int fw_route_url(const char *in, char *out, size_t n, fw_err *e) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = FW_ERR;
    if (!u) return fw_errf(e, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, in, 0) != CURLUE_OK) {
        fw_errf(e, "'%.200s' is not a URL (http://HOST:PORT)", in);
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    if (!scheme || (strcmp(scheme, "http") && strcmp(scheme, "https")))
        fw_errf(e, "'%.200s': a replica URL starts with http:// or https://", in);
    else if (!host || !*host) fw_errf(e, "'%.200s' names no host", in);
    else if (path && strcmp(path, "/") && *path) fw_errf(e, "'%.200s': a replica URL has no path (http://HOST:PORT)", in);
    else if ((size_t)snprintf(out, n, "%s://%s:%s", scheme, host, port ? port : "80") >= n)
        fw_errf(e, "'%.200s' is too long", in);
    else rc = FW_OK;
out:
    curl_free(scheme), curl_free(host), curl_free(port), curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static fw_replica *find(fw_route *s, const char *url) {
    for (fw_replica *r = s->reps; r; r = r->next)
        if (!strcmp(r->url, url)) return r;
    return NULL;
}

static void forget(fw_route *s, fw_replica *gone) {
    for (fw_replica **p = &s->reps; *p; p = &(*p)->next)
        if (*p == gone) {
            *p = gone->next;
            fprintf(stderr, "furrow route: replica %s left\n", gone->url);
            free(gone);
            return;
        }
}

/* A job id as Slurm writes them (digits, '_' for arrays, a cluster name after ';' is cut off). */
static bool job_ok(const char *job) {
    size_t n = strlen(job);
    return n < 64 && strspn(job, "0123456789_.-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

/* Under s->mu: a replica joined; the autoscaler stops counting it as starting. */
static void joined(fw_route *s, const char *job) {
    int k = -1;
    for (int i = 0; i < s->n_starting && k < 0; i++)
        if (!strcmp(s->starting[i].job, job)) k = i;
    for (int i = 0; i < s->n_starting && k < 0 && !*job; i++) k = i; /* no id: the oldest */
    if (k < 0) return;
    s->starting[k] = s->starting[--s->n_starting];
}

int fw_route_add(fw_route *s, const char *url, const char *job, fw_rep_source src, fw_err *e) {
    char u[256];
    if (fw_route_url(url, u, sizeof u, e)) return FW_ERR;
    if (!job) job = "";
    if (!job_ok(job)) return fw_errf(e, "job id '%.80s' is not a Slurm job id", job);
    pthread_mutex_lock(&s->mu);
    fw_replica *r = find(s, u);
    int added = !r;
    if (r) {
        if (r->draining && !r->held) fprintf(stderr, "furrow route: replica %s is back\n", u);
        r->draining = r->held, r->seen = true;
    } else if ((r = calloc(1, sizeof *r))) {
        snprintf(r->url, sizeof r->url, "%s", u);
        snprintf(r->job, sizeof r->job, "%s", job);
        joined(s, job);
        r->source = src, r->seen = true;
        /* In service at once: a replica registers when it is ready, and the
         * first failed request or check takes it out. */
        r->healthy = true;
        r->next = s->reps, s->reps = r;
        fprintf(stderr, "furrow route: replica %s joined%s%s\n", u, *job ? ", job " : "", job);
    }
    pthread_cond_signal(&s->wake); /* probe it now */
    pthread_mutex_unlock(&s->mu);
    if (!r) return fw_errf(e, "out of memory");
    return added;
}

int fw_route_leave(fw_route *s, const char *url) {
    char u[256];
    fw_err e;
    if (fw_route_url(url, u, sizeof u, &e)) return FW_ERR;
    pthread_mutex_lock(&s->mu);
    fw_replica *r = find(s, u);
    if (r) {
        r->draining = true, r->held = false; /* leaving ends an operator's hold: nothing to resume */
        fprintf(stderr, "furrow route: replica %s is draining (%d requests in flight)\n", u, r->in_flight);
        if (!r->in_flight) forget(s, r);
    }
    pthread_mutex_unlock(&s->mu);
    return r ? FW_OK : FW_ERR;
}

int fw_route_hold(fw_route *s, const char *url, bool hold) {
    char u[256];
    fw_err e;
    if (fw_route_url(url, u, sizeof u, &e)) return FW_ERR;
    pthread_mutex_lock(&s->mu);
    fw_replica *r = find(s, u);
    if (r) {
        r->held = r->draining = hold;
        fprintf(stderr, "furrow route: replica %s %s\n", u, hold ? "drained by request" : "resumed");
    }
    pthread_mutex_unlock(&s->mu);
    return r ? FW_OK : FW_ERR;
}

/* Requests it has: the larger of ours in flight and what its /metrics last
 * said (which counts other clients too), plus the share of KV in use. */
static double load(const fw_replica *r) {
    double busy = r->queue + r->running;
    if (busy < r->in_flight) busy = r->in_flight;
    return busy + (r->kv_total > 0 ? r->kv_used / r->kv_total : 0);
}

fw_replica *fw_route_pick(fw_route *s, const char (*avoid)[256], int n_avoid, char *url, size_t n) {
    pthread_mutex_lock(&s->mu);
    int count = 0;
    for (fw_replica *r = s->reps; r; r = r->next) count++;
    fw_replica *best = NULL;
    double best_load = 0;
    int start = count ? (int)(s->rr++ % (unsigned)count) : 0;
    for (int k = 0; k < count; k++) { /* from a rotating start: ties go round */
        fw_replica *r = s->reps;
        for (int j = (start + k) % count; j > 0; j--) r = r->next;
        bool skip = !r->healthy || r->draining;
        for (int a = 0; a < n_avoid && !skip; a++) skip = !strcmp(avoid[a], r->url);
        if (skip) continue;
        if (!best || load(r) < best_load) best = r, best_load = load(r);
    }
    if (best) {
        best->in_flight++;
        best->requests++;
        snprintf(url, n, "%s", best->url);
    }
    pthread_mutex_unlock(&s->mu);
    return best;
}

void fw_route_done(fw_route *s, fw_replica *r, bool ok, bool replica_failed, bool moved) {
    pthread_mutex_lock(&s->mu);
    r->in_flight--;
    if (!ok) r->errors++;
    if (moved) r->retries_from++;
    if (replica_failed && r->healthy) {
        r->healthy = false, r->health_changes++, r->down_since = fw_now();
        fprintf(stderr, "furrow route: replica %s failed a request: out of service until a check passes\n", r->url);
    }
    if (r->draining && !r->held && !r->in_flight) forget(s, r);
    pthread_mutex_unlock(&s->mu);
}

void fw_route_forget_dead(fw_route *s) {
    if (!(s->o.forget_s > 0)) return;
    double now = fw_now();
    for (;;) {
        char file[300] = "", url[256] = "";
        pthread_mutex_lock(&s->mu);
        fw_replica *r = s->reps;
        while (r && (r->healthy || r->in_flight || !r->down_since || now - r->down_since < s->o.forget_s)) r = r->next;
        if (r) {
            fprintf(stderr, "furrow route: replica %s out of service for %.0f s: forgotten (--forget-after)\n", r->url,
                    now - r->down_since);
            snprintf(file, sizeof file, "%s", r->file);
            snprintf(url, sizeof url, "%s", r->url);
            forget(s, r);
        }
        bool found = r != NULL;
        pthread_mutex_unlock(&s->mu);
        if (!found) return;
        if (!*file || !s->o.registry) continue;
        char path[4096], line[300] = "";
        snprintf(path, sizeof path, "%s/%s", s->o.registry, file);
        FILE *f = fopen(path, "r");
        bool same = f && fgets(line, sizeof line, f) && (line[strcspn(line, "\r\n")] = 0, !strcmp(line, url));
        if (f) fclose(f);
        if (same) unlink(path); /* else the scan would bring the dead replica back each round */
    }
}

static const char *source_name(fw_rep_source src) {
    return src == FW_REP_FLAG ? "flag" : src == FW_REP_POST ? "registered" : "registry";
}

char *fw_route_list_json(fw_route *s) {
    json_t *a = json_array();
    pthread_mutex_lock(&s->mu);
    for (fw_replica *r = s->reps; r; r = r->next)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:i, s:f, s:f, s:f, s:f, s:I, s:I}", "url", r->url, "job", r->job,
                                           "source", source_name(r->source), "healthy", r->healthy, "draining",
                                           r->draining, "held", r->held, "in_flight", r->in_flight, "queue", r->queue, "running",
                                           r->running, "kv_used", r->kv_used, "kv_total", r->kv_total, "requests",
                                           (json_int_t)r->requests, "errors", (json_int_t)r->errors));
    pthread_mutex_unlock(&s->mu);
    json_t *o = json_pack("{s:o}", "replicas", a);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

char *fw_route_metrics(fw_route *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    pthread_mutex_lock(&s->mu);
    fprintf(f, "# HELP furrow_route_requests_total Client requests answered, by status.\n"
               "# TYPE furrow_route_requests_total counter\n");
    for (int st = 100; st < 600; st++)
        if (s->status_count[st])
            fprintf(f, "furrow_route_requests_total{status=\"%d\"} %llu\n", st, (unsigned long long)s->status_count[st]);
    fprintf(f,
            "# HELP furrow_route_retries_total Requests sent again to another replica after one failed.\n"
            "# TYPE furrow_route_retries_total counter\nfurrow_route_retries_total %llu\n"
            "# HELP furrow_route_no_replica_total Requests answered 503 because no replica was in service.\n"
            "# TYPE furrow_route_no_replica_total counter\nfurrow_route_no_replica_total %llu\n"
            "# HELP furrow_route_http_connections Open client connections.\n"
            "# TYPE furrow_route_http_connections gauge\nfurrow_route_http_connections %d\n"
            "# HELP furrow_route_http_timeouts_total Client connections cut by --header-timeout or --body-timeout.\n"
            "# TYPE furrow_route_http_timeouts_total counter\nfurrow_route_http_timeouts_total %llu\n",
            (unsigned long long)s->retries, (unsigned long long)s->no_replica, s->http_open,
            (unsigned long long)s->http_cut);
    if (s->o.up_cmd)
        fprintf(f,
                "# HELP furrow_route_autoscale_actions_total Autoscaler decisions carried out, by action.\n"
                "# TYPE furrow_route_autoscale_actions_total counter\n"
                "furrow_route_autoscale_actions_total{action=\"up\"} %llu\n"
                "furrow_route_autoscale_actions_total{action=\"down\"} %llu\n"
                "# HELP furrow_route_autoscale_failures_total --scale-up or --scale-down commands that failed.\n"
                "# TYPE furrow_route_autoscale_failures_total counter\nfurrow_route_autoscale_failures_total %llu\n"
                "# HELP furrow_route_autoscale_starting Replicas started that have not joined yet.\n"
                "# TYPE furrow_route_autoscale_starting gauge\nfurrow_route_autoscale_starting %d\n"
                "# HELP furrow_route_autoscale_mean_queue_depth Mean queue depth of the replicas in service.\n"
                "# TYPE furrow_route_autoscale_mean_queue_depth gauge\nfurrow_route_autoscale_mean_queue_depth %.6g\n"
                "# HELP furrow_route_autoscale_mean_ttft_seconds Mean time to first token on the replicas in service, "
                "over the last probe round that saw requests get one.\n"
                "# TYPE furrow_route_autoscale_mean_ttft_seconds gauge\nfurrow_route_autoscale_mean_ttft_seconds %.6g\n",
                (unsigned long long)s->scale_ups, (unsigned long long)s->scale_downs,
                (unsigned long long)s->scale_failures, s->n_starting, s->mean_queue, s->mean_ttft);
    int n = 0, up = 0;
    for (fw_replica *r = s->reps; r; r = r->next) n++, up += r->healthy && !r->draining;
    fprintf(f,
            "# HELP furrow_route_replicas Replicas known.\n# TYPE furrow_route_replicas gauge\nfurrow_route_replicas %d\n"
            "# HELP furrow_route_replicas_in_service Replicas healthy and not draining.\n"
            "# TYPE furrow_route_replicas_in_service gauge\nfurrow_route_replicas_in_service %d\n",
            n, up);
    static const char *const names[][3] = {
        {"healthy", "gauge", "1 while the replica passes its health checks."},
        {"draining", "gauge", "1 while the replica is leaving (no new requests)."},
        {"in_flight", "gauge", "This router's requests on the replica now."},
        {"queue_depth", "gauge", "Requests waiting on the replica, from its /metrics."},
        {"running", "gauge", "Requests running on the replica, from its /metrics."},
        {"kv_used_ratio", "gauge", "Share of the replica's KV blocks in use, from its /metrics."},
        {"requests_total", "counter", "Requests sent to the replica (retries included)."},
        {"errors_total", "counter", "Requests that failed on the replica (connection, 5xx, cut stream)."},
        {"retries_total", "counter", "Requests that failed on the replica before their answer began, sent on to another."},
        {"connects_total", "counter", "TCP connections opened to the replica for requests (the others reused an open one)."},
        {"ttft_seconds", "gauge", "Mean time to first token of the requests that got theirs between the last two reads of its /metrics."},
    };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        fprintf(f, "# HELP furrow_route_replica_%s %s\n# TYPE furrow_route_replica_%s %s\n", names[k][0], names[k][2],
                names[k][0], names[k][1]);
        for (fw_replica *r = s->reps; r; r = r->next) {
            double v[] = {r->healthy, r->draining, r->in_flight, r->queue, r->running,
                          r->kv_total > 0 ? r->kv_used / r->kv_total : 0, (double)r->requests, (double)r->errors,
                          (double)r->retries_from, (double)r->connects, r->ttft_last};
            fprintf(f, "furrow_route_replica_%s{replica=\"%s\"} %.17g\n", names[k][0], r->url, v[k]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    fclose(f);
    return buf;
}

/* The value of an unlabelled sample "name value" in Prometheus text, or fallback. */
static double sample(const char *text, const char *name, double fallback) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return fallback;
}

void fw_route_parse_metrics(fw_replica *r, const char *text) {
    r->queue = sample(text, "furrow_queue_depth", 0);
    r->running = sample(text, "furrow_running_requests", 0);
    r->kv_used = sample(text, "furrow_kv_blocks_used", 0);
    r->kv_total = sample(text, "furrow_kv_blocks_total", 0);
    /* Time to first token: what came since the last read (the histogram's sum
     * and count grow; a restarted replica starts them again at 0). */
    double sum = sample(text, "furrow_time_to_first_token_seconds_sum", -1),
           n = sample(text, "furrow_time_to_first_token_seconds_count", -1);
    if (sum < 0 || n < 0) return;
    if (r->ttft_seen && n >= r->ttft_count_raw && sum >= r->ttft_sum_raw) {
        r->ttft_new_n += n - r->ttft_count_raw;
        r->ttft_new_sum += sum - r->ttft_sum_raw;
        if (n > r->ttft_count_raw) r->ttft_last = (sum - r->ttft_sum_raw) / (n - r->ttft_count_raw);
    }
    r->ttft_seen = true, r->ttft_sum_raw = sum, r->ttft_count_raw = n;
}
