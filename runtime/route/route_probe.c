/* furrow route's prober: every --poll-interval seconds it reads the registry
 * folder (replicas that wrote a file join, those whose file went away drain),
 * then asks each replica for /health and /metrics. A replica failing
 * --unhealthy-after checks in a row is taken out of service; one check passing
 * puts it back. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/base/clock.h"
#include "runtime/route/route.h"

typedef struct grow {
    char *p;
    size_t n;
} grow;

static size_t keep(char *data, size_t size, size_t nmemb, void *arg) {
    grow *g = arg;
    size_t add = size * nmemb;
    if (g->n + add > (1u << 20)) return 0; /* a /metrics page is small; more is not a replica */
    char *p = realloc(g->p, g->n + add + 1);
    if (!p) return 0;
    memcpy(p + g->n, data, add);
    g->p = p, g->n += add, p[g->n] = 0;
    return add;
}

/* GET base+path; the body (malloc'd) when the answer is 200, else NULL. */
static char *get(fw_route *s, const char *base, const char *path, double timeout_s, double connect_s) {
    char url[320];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *c = fw_route_curl_take(s, base);
    if (!c) return NULL;
    grow g = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_s * 1000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    fw_route_curl_give(s, c, base, rc == CURLE_OK);
    if (rc != CURLE_OK || status != 200) {
        free(g.p);
        return NULL;
    }
    return g.p ? g.p : calloc(1, 1);
}

void fw_route_scan_registry(fw_route *s) {
    DIR *d = opendir(s->o.registry);
    if (!d) {
        static int said; /* once: the folder may appear later (shared storage) */
        if (!said++) fprintf(stderr, "furrow route: --registry %s: %s\n", s->o.registry, strerror(errno));
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (fw_replica *r = s->reps; r; r = r->next) r->seen = false;
    pthread_mutex_unlock(&s->mu);
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue; /* ., .., and files being written */
        char path[4096], line[300] = "", job[80] = "";
        snprintf(path, sizeof path, "%s/%s", s->o.registry, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        bool got = fgets(line, sizeof line, f) != NULL;
        if (got && fgets(job, sizeof job, f)) job[strcspn(job, "\r\n")] = 0; /* "job ID" on the second line */
        fclose(f);
        if (!got) continue;
        line[strcspn(line, "\r\n")] = 0;
        fw_err e;
        if (fw_route_add(s, line, strncmp(job, "job ", 4) ? NULL : job + 4, FW_REP_REGISTRY, &e) < 0) {
            static int said;
            if (!said++) fprintf(stderr, "furrow route: registry file %s: %s\n", path, e.msg);
            continue;
        }
        char u[256];
        if (fw_route_url(line, u, sizeof u, &e)) continue;
        pthread_mutex_lock(&s->mu);
        for (fw_replica *r = s->reps; r; r = r->next)
            if (!strcmp(r->url, u) && r->source == FW_REP_REGISTRY) snprintf(r->file, sizeof r->file, "%s", de->d_name);
        pthread_mutex_unlock(&s->mu);
    }
    closedir(d);
    /* Registry replicas whose file is gone are leaving. */
    for (;;) {
        char url[256] = "";
        pthread_mutex_lock(&s->mu);
        for (fw_replica *r = s->reps; r && !*url; r = r->next)
            if (r->source == FW_REP_REGISTRY && !r->seen && (!r->draining || r->held)) snprintf(url, sizeof url, "%s", r->url);
        pthread_mutex_unlock(&s->mu);
        if (!*url) break;
        fw_route_leave(s, url);
    }
}

static void probe_all(fw_route *s) {
    pthread_mutex_lock(&s->mu);
    int n = 0;
    for (fw_replica *r = s->reps; r; r = r->next) n++;
    char (*urls)[256] = n ? malloc((size_t)n * sizeof *urls) : NULL;
    int k = 0;
    for (fw_replica *r = s->reps; r && urls; r = r->next) memcpy(urls[k++], r->url, sizeof urls[0]);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < k; i++) {
        double t = s->o.poll_s < 2 ? 2 : s->o.poll_s; /* a busy replica may be slow to answer */
        char *health = get(s, urls[i], "/health", t, s->o.connect_timeout_s);
        char *metrics = health ? get(s, urls[i], "/metrics", t, s->o.connect_timeout_s) : NULL;
        pthread_mutex_lock(&s->mu);
        for (fw_replica *r = s->reps; r; r = r->next) {
            if (strcmp(r->url, urls[i])) continue;
            if (health) {
                if (!r->healthy) fprintf(stderr, "furrow route: replica %s is healthy\n", r->url), r->health_changes++;
                r->healthy = true, r->fails = 0, r->down_since = 0;
                if (metrics) fw_route_parse_metrics(r, metrics);
            } else if (++r->fails >= s->o.unhealthy_after && r->healthy) {
                r->healthy = false, r->health_changes++, r->down_since = fw_now();
                fprintf(stderr, "furrow route: replica %s failed %d health checks: out of service\n", r->url, r->fails);
            }
            break;
        }
        pthread_mutex_unlock(&s->mu);
        free(health), free(metrics);
    }
    free(urls);
}

static void *prober(void *arg) {
    fw_route *s = arg;
    for (;;) {
        if (s->o.registry) fw_route_scan_registry(s);
        probe_all(s);
        fw_route_forget_dead(s);
        fw_route_autoscale(s);
        pthread_mutex_lock(&s->mu);
        if (!s->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double at = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + s->o.poll_s;
            ts.tv_sec = (time_t)at, ts.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
            pthread_cond_timedwait(&s->wake, &s->mu, &ts);
        }
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) return NULL;
    }
}

int fw_route_probe_start(fw_route *s, fw_err *e) {
    if (pthread_create(&s->prober, NULL, prober, s)) return fw_errf(e, "cannot start the prober thread");
    s->prober_started = true;
    return FW_OK;
}

void fw_route_probe_stop(fw_route *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->prober_started) pthread_join(s->prober, NULL);
    s->prober_started = false;
}
