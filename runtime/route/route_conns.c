/* The router's connections to its replicas, kept open between requests: a
 * pool of idle libcurl easy handles, each holding the connection of its last
 * transfer (libcurl keeps it in the handle, and curl_easy_reset leaves it
 * there). A transfer takes a handle whose last replica is its own, so it
 * reuses that connection instead of opening one; the handle goes back when the
 * transfer ends. Sharing one connection cache between threads through
 * libcurl's share interface is not supported by libcurl, hence the pool. A
 * connection the replica closed meanwhile (its idle timeout) is noticed by
 * curl, which opens a new one. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "runtime/route/route.h"

void fw_route_conns_init(fw_route *s) {
    pthread_mutex_init(&s->conns_mu, NULL);
    s->n_idle = 0;
}

void fw_route_conns_free(fw_route *s) {
    for (int i = 0; i < s->n_idle; i++) curl_easy_cleanup(s->idle[i].curl); /* closes their connections */
    s->n_idle = 0;
    pthread_mutex_destroy(&s->conns_mu);
}

void *fw_route_curl_take(fw_route *s, const char *base) {
    CURL *c = NULL;
    pthread_mutex_lock(&s->conns_mu);
    int pick = -1;
    for (int i = s->n_idle - 1; i >= 0 && pick < 0; i--) /* the most recently used: its connection is the freshest */
        if (!strcmp(s->idle[i].base, base)) pick = i;
    if (pick < 0 && s->n_idle == FW_ROUTE_IDLE_MAX) pick = 0; /* none of its own: the oldest, to connect anew */
    if (pick >= 0) {
        c = s->idle[pick].curl;
        memmove(&s->idle[pick], &s->idle[pick + 1], (size_t)(s->n_idle - pick - 1) * sizeof s->idle[0]);
        s->n_idle--;
    }
    pthread_mutex_unlock(&s->conns_mu);
    if (c) {
        curl_easy_reset(c); /* options back to defaults; the connection stays */
    } else if (!(c = curl_easy_init())) {
        return NULL;
    }
    curl_easy_setopt(c, CURLOPT_MAXCONNECTS, 1L); /* a handle keeps one connection: to the replica it last served */
    return c;
}

void fw_route_curl_give(fw_route *s, void *curl, const char *base, bool keep) {
    if (!keep) {
        curl_easy_cleanup(curl);
        return;
    }
    CURL *drop = NULL;
    pthread_mutex_lock(&s->conns_mu);
    if (s->n_idle == FW_ROUTE_IDLE_MAX) { /* full: the oldest goes */
        drop = s->idle[0].curl;
        memmove(&s->idle[0], &s->idle[1], (size_t)(s->n_idle - 1) * sizeof s->idle[0]);
        s->n_idle--;
    }
    s->idle[s->n_idle].curl = curl;
    snprintf(s->idle[s->n_idle].base, sizeof s->idle[0].base, "%s", base);
    s->n_idle++;
    pthread_mutex_unlock(&s->conns_mu);
    if (drop) curl_easy_cleanup(drop);
}
