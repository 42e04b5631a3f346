/* A serve replica joining and leaving routers (serve_register.h). */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/serve/serve_register.h"

/* Seconds between POSTs: a router that restarts learns of the replica within this. */
#define HEARTBEAT_S 5

struct fw_register {
    char router[256], self[256], job[64], file[4400], dir[4096];
    pthread_t t;
    bool started, left, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static size_t drop(char *d, size_t size, size_t nmemb, void *arg) {
    (void)d, (void)arg;
    return size * nmemb;
}

/* One call to the router's /replicas; the HTTP status, or -1 when it could not be reached. */
static long call(const fw_register *r, const char *method) {
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char url[600], body[400];
    char *esc = curl_easy_escape(c, r->self, 0);
    snprintf(url, sizeof url, "%s/replicas?url=%s", r->router, esc ? esc : "");
    curl_free(esc);
    snprintf(body, sizeof body, "{\"url\": \"%s\", \"job\": \"%s\"}", r->self, r->job);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 3L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, drop);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

static int write_registry(fw_register *r, fw_err *e);

static void *heartbeat(void *arg) {
    fw_register *r = arg;
    long last = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        pthread_mutex_unlock(&r->mu);
        if (r->router[0]) {
            long st = call(r, "POST");
            if (st != last && st == 200) fprintf(stderr, "furrow serve: registered %s at %s\n", r->self, r->router);
            else if (st != last) fprintf(stderr, "furrow serve: --register %s: %s; trying again every %d s\n",
                                         r->router, st < 0 ? "cannot reach it" : "refused", HEARTBEAT_S);
            last = st;
        }
        fw_err e;
        if (r->dir[0] && access(r->file, F_OK) && write_registry(r, &e) == FW_OK) /* a router dropped it while out of reach */
            fprintf(stderr, "furrow serve: registry file %s written again\n", r->file);
        pthread_mutex_lock(&r->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += HEARTBEAT_S;
        if (!r->stop) pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* The registry file's name: the URL with anything but letters and digits as '_'. */
static int write_registry(fw_register *r, fw_err *e) {
    const char *dir = r->dir;
    char name[256], tmp[4400];
    size_t k = 0;
    for (const char *p = strstr(r->self, "://") ? strstr(r->self, "://") + 3 : r->self; *p && k < sizeof name - 1; p++)
        name[k++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ? *p : '_';
    name[k] = 0;
    snprintf(r->file, sizeof r->file, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name); /* the router skips names starting with '.' */
    errno = 0;
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%s\n", r->self) > 0 && (!r->job[0] || fprintf(f, "job %s\n", r->job) > 0);
    if (f && fclose(f)) ok = false;
    if (ok && rename(tmp, r->file)) ok = false;
    if (!ok) {
        int err = errno ? errno : EIO;
        unlink(tmp);
        return fw_errf(e, "--registry %s: %s", dir, strerror(err));
    }
    return FW_OK;
}

fw_register *fw_register_start(const char *router, const char *registry, const char *self_url, const char *job,
                               fw_err *e) {
    fw_register *r = calloc(1, sizeof *r);
    if (!r) {
        fw_errf(e, "out of memory");
        return NULL;
    }
    snprintf(r->self, sizeof r->self, "%s", self_url);
    if (job && strlen(job) < sizeof r->job && strspn(job, "0123456789_") == strlen(job))
        snprintf(r->job, sizeof r->job, "%s", job);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (registry) snprintf(r->dir, sizeof r->dir, "%s", registry);
    if (registry && write_registry(r, e)) {
        r->dir[0] = 0;
        fw_register_free(r);
        return NULL;
    }
    if (router) {
        size_t n = strlen(router);
        while (n && router[n - 1] == '/') n--;
        snprintf(r->router, sizeof r->router, "%.*s", (int)n, router);
    }
    if (pthread_create(&r->t, NULL, heartbeat, r)) {
        fw_errf(e, "--register: cannot start a thread");
        fw_register_free(r);
        return NULL;
    }
    r->started = true;
    return r;
}

void fw_register_leave(fw_register *r) {
    if (!r || r->left) return;
    r->left = true;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->t, NULL);
        r->started = false;
    }
    if (r->router[0]) {
        long st = call(r, "DELETE");
        fprintf(stderr, "furrow serve: left %s (%s)\n", r->router, st == 200 ? "draining" : "it did not answer");
    }
    if (r->dir[0] && unlink(r->file) && errno != ENOENT)
        fprintf(stderr, "furrow serve: cannot remove %s: %s\n", r->file, strerror(errno));
}

void fw_register_free(fw_register *r) {
    if (!r) return;
    fw_register_leave(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
