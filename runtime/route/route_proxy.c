/* The upstream side of one client request (libcurl, a thread per request):
 * the least-loaded replica gets it; while nothing has gone back to the client
 * (a stream's first bytes, or a whole non-streaming answer) a failure moves it
 * to another replica, up to --retries times. A connection that fails takes the
 * replica out of service at once; a 502/503/504 (queue full, shutting down)
 * only moves the request. The client side reads the answer as it comes.
 * Transfers reuse the connections of earlier ones (route_conns.c). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/engine/job.h"
#include "runtime/route/route.h"

struct fw_proxy {
    fw_route *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                  /* the worker thread and the client */
    char method[8], path[64];
    char *body;
    size_t len;
    /* The answer of the current attempt. */
    long status;
    char ctype[128];
    char *data;                /* bytes not yet read by the client: data[off, n) */
    size_t n, off, cap;
    bool committed;            /* the client sees this attempt's answer */
    bool ended, cut;           /* the transfer ended; cut: the replica failed mid-answer */
    bool gone;                 /* the client left */
};

static void unref(fw_proxy *p) {
    pthread_mutex_lock(&p->mu);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last) return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->body), free(p->data);
    free(p);
}

static bool append(fw_proxy *p, const char *d, size_t k) {
    if (p->off == p->n) p->off = p->n = 0;
    if (p->n + k > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->n + k) cap *= 2;
        char *b = realloc(p->data, cap);
        if (!b) return false;
        p->data = b, p->cap = cap;
    }
    memcpy(p->data + p->n, d, k);
    p->n += k;
    return true;
}

static size_t on_header(char *d, size_t size, size_t nmemb, void *arg) {
    fw_proxy *p = arg;
    size_t k = size * nmemb;
    if (k > 13 && !strncasecmp(d, "content-type:", 13)) {
        const char *v = d + 13;
        while (*v == ' ') v++;
        size_t m = (size_t)(d + k - v);
        while (m && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' ')) m--;
        pthread_mutex_lock(&p->mu);
        snprintf(p->ctype, sizeof p->ctype, "%.*s", (int)m, v);
        pthread_mutex_unlock(&p->mu);
    }
    return k;
}

typedef struct attempt {
    fw_proxy *p;
    CURL *c;
} attempt;

static size_t on_body(char *d, size_t size, size_t nmemb, void *arg) {
    attempt *a = arg;
    fw_proxy *p = a->p;
    size_t k = size * nmemb;
    long status = 0;
    curl_easy_getinfo(a->c, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_lock(&p->mu);
    bool ok = !p->gone && append(p, d, k);
    p->status = status;
    /* A stream goes to the client from its first bytes: from then on it cannot move. */
    if (ok && status == 200 && !strncmp(p->ctype, "text/event-stream", 17)) p->committed = true;
    if (p->committed) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return ok ? k : 0;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    fw_proxy *p = arg;
    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&p->mu);
    bool gone = p->gone;
    pthread_mutex_unlock(&p->mu);
    return gone; /* nonzero aborts the transfer: the replica cancels the request */
}

/* One try on the replica at url; the curl result; *connects: the new connections it opened. */
static CURLcode try_once(fw_proxy *p, const char *base, char *errbuf, long *connects) {
    char url[320];
    snprintf(url, sizeof url, "%s%s", base, p->path);
    CURL *c = fw_route_curl_take(p->s, base);
    if (!c) return CURLE_OUT_OF_MEMORY;
    attempt a = {p, c};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (!strcmp(p->method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->body ? p->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    }
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(p->s->o.connect_timeout_s * 1000));
    if (p->s->o.upstream_timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(p->s->o.upstream_timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *connects = 0;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, connects);
    pthread_mutex_lock(&p->mu);
    p->status = status;
    pthread_mutex_unlock(&p->mu);
    fw_route_curl_give(p->s, c, base, rc == CURLE_OK); /* a failed or aborted transfer's connection is gone */
    curl_slist_free_all(h);
    return rc;
}

/* The router's own answer (no replica gave one). */
static void answer(fw_proxy *p, int status, const char *msg) {
    json_t *o = fw_error_json(status, msg);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    p->n = p->off = 0;
    if (text) append(p, text, strlen(text));
    free(text);
    p->status = status;
    snprintf(p->ctype, sizeof p->ctype, "application/json");
}

static void *worker(void *arg) {
    fw_proxy *p = arg;
    fw_route *s = p->s;
    int tries = s->o.retries + 1;
    char (*tried)[256] = calloc((size_t)tries, sizeof *tried); /* URLs: a replica may leave the table meanwhile */
    char why[CURL_ERROR_SIZE + 300] = "";
    int n_tried = 0;
    bool answered = false, last_busy = false;
    while (n_tried < tries && tried) {
        char url[256], errbuf[CURL_ERROR_SIZE];
        fw_replica *r = fw_route_pick(s, tried, n_tried, url, sizeof url);
        if (!r) break;
        if (n_tried) {
            pthread_mutex_lock(&s->mu);
            s->retries++;
            pthread_mutex_unlock(&s->mu);
        }
        memcpy(tried[n_tried++], url, sizeof tried[0]);
        pthread_mutex_lock(&p->mu);
        p->n = p->off = 0, p->status = 0, p->ctype[0] = 0;
        pthread_mutex_unlock(&p->mu);
        long connects;
        CURLcode rc = try_once(p, url, errbuf, &connects);
        pthread_mutex_lock(&s->mu);
        r->connects += (uint64_t)connects; /* r stays in the table until fw_route_done */
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&p->mu);
        bool gone = p->gone, committed = p->committed;
        long st = p->status;
        bool busy = rc == CURLE_OK && (st == 502 || st == 503 || st == 504);
        if (rc != CURLE_OK && !gone)
            snprintf(why, sizeof why, "replica %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        else if (busy) snprintf(why, sizeof why, "replica %s answered %ld", url, st);
        last_busy = busy;
        bool last = n_tried == tries;
        if (committed || gone || (rc == CURLE_OK && (!busy || last))) {
            p->cut = rc != CURLE_OK;
            p->committed = answered = true;
            pthread_mutex_unlock(&p->mu);
            /* Failed the request: cut mid-answer, or a 5xx other than busy. */
            fw_route_done(s, r, rc == CURLE_OK && st < 500, rc != CURLE_OK && !gone, false);
            break;
        }
        pthread_mutex_unlock(&p->mu);
        fw_route_done(s, r, false, rc != CURLE_OK, true);
    }
    pthread_mutex_lock(&p->mu);
    if (!answered) {
        pthread_mutex_lock(&s->mu);
        if (!n_tried) s->no_replica++;
        pthread_mutex_unlock(&s->mu);
        char msg[sizeof why + 80];
        if (!n_tried) snprintf(msg, sizeof msg, "no replica is in service");
        else snprintf(msg, sizeof msg, "%d replica(s) tried, none answered; last: %s", n_tried, why);
        answer(p, n_tried && !last_busy ? 502 : 503, msg);
        p->committed = true;
    }
    p->ended = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    free(tried);
    unref(p);
    pthread_mutex_lock(&s->mu);
    s->workers--;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

fw_proxy *fw_proxy_start(fw_route *s, const char *method, const char *path, char *body, size_t len) {
    fw_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        free(body);
        return NULL;
    }
    p->s = s, p->refs = 2, p->body = body, p->len = len;
    snprintf(p->method, sizeof p->method, "%s", method);
    snprintf(p->path, sizeof p->path, "%s", path);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&s->mu);
    s->workers++;
    pthread_mutex_unlock(&s->mu);
    if (pthread_create(&t, &at, worker, p)) {
        pthread_mutex_lock(&s->mu);
        s->workers--;
        pthread_mutex_unlock(&s->mu);
        pthread_attr_destroy(&at);
        p->refs = 1;
        unref(p);
        return NULL;
    }
    pthread_attr_destroy(&at);
    return p;
}

/* Waits (under p->mu) up to 100 ms for news; false when the client has left. */
static bool wait_a_little(fw_proxy *p, fw_proxy_gone_fn gone, void *arg) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0) return true;
    return !gone || !gone(arg);
}

bool fw_proxy_wait_head(fw_proxy *p, int *status, const char **content_type, fw_proxy_gone_fn gone, void *arg) {
    pthread_mutex_lock(&p->mu);
    bool here = true;
    while (!p->committed && (here = wait_a_little(p, gone, arg))) {}
    *status = (int)p->status;
    *content_type = p->ctype[0] ? p->ctype : "application/json";
    pthread_mutex_unlock(&p->mu);
    return here;
}

long fw_proxy_read(fw_proxy *p, char *buf, size_t max, fw_proxy_gone_fn gone, void *arg) {
    pthread_mutex_lock(&p->mu);
    bool here = true;
    while (p->off == p->n && !p->ended && (here = wait_a_little(p, gone, arg))) {}
    long k;
    if (!here) {
        k = -1;
    } else if (p->off < p->n) {
        size_t m = p->n - p->off < max ? p->n - p->off : max;
        memcpy(buf, p->data + p->off, m);
        p->off += m;
        k = (long)m;
    } else {
        k = p->cut ? -1 : 0;
    }
    pthread_mutex_unlock(&p->mu);
    return k;
}

void fw_proxy_release(fw_proxy *p) {
    pthread_mutex_lock(&p->mu);
    p->gone = true;
    pthread_mutex_unlock(&p->mu);
    unref(p);
}
