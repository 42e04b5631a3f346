/* furrow route's autoscaler: after each probe round, at most one decision.
 * Up (--scale-up, e.g. an sbatch of jobs/slurm/replica.sbatch; its first word
 * of output is taken as the new job's id): fewer replicas in service or
 * starting than --min-replicas, or the mean queue depth of those in service
 * above --scale-up-queue, or their mean time to first token (from their
 * /metrics histograms: the requests that got a first token since the last
 * round) above --scale-latency-ms, for --scale-window seconds, below
 * --max-replicas. A round in which no request got a first token leaves the
 * latency's verdict as it was, unless every replica is idle.
 * Down (--scale-down, e.g. scancel; FURROW_JOB and FURROW_REPLICA name the
 * replica): every replica idle for --scale-window seconds, more in service than
 * --min-replicas, none starting; the replica is drained first. Decisions are
 * --cooldown seconds apart; each is logged and counted in /metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "io/base/clock.h"
#include "runtime/route/route.h"

/* Runs `sh -c`, with FURROW_JOB and FURROW_REPLICA set when given (ids and
 * URLs the table checked: no quotes in them); the first word of its output
 * into out. True when it exited 0. */
static bool run(const char *cmd, const char *job, const char *url, char *out, size_t n) {
    if ((job && strchr(job, '\'')) || (url && strchr(url, '\''))) return false;
    size_t len = strlen(cmd) + 400;
    char *full = malloc(len);
    if (!full) return false;
    if (job) snprintf(full, len, "FURROW_JOB='%s' FURROW_REPLICA='%s'; export FURROW_JOB FURROW_REPLICA; %s", job, url, cmd);
    else snprintf(full, len, "%s", cmd);
    fflush(stderr);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return false;
    char line[256] = "";
    if (out) *out = 0;
    if (fgets(line, sizeof line, p) && out) {
        size_t k = strcspn(line, "; \t\r\n"); /* sbatch --parsable: "ID" or "ID;CLUSTER" */
        snprintf(out, n, "%.*s", (int)k, line);
    }
    while (fgets(line, sizeof line, p)) {} /* the rest, so the command is not cut off by a closed pipe */
    int st = pclose(p);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Under s->mu: the idle replica to stop, the most recently joined with a job id (NULL: none). */
static fw_replica *idle_one(fw_route *s) {
    for (fw_replica *r = s->reps; r; r = r->next) /* the newest is first */
        if (r->healthy && !r->draining && r->job[0] && !r->in_flight && !r->queue && !r->running) return r;
    return NULL;
}

void fw_route_autoscale(fw_route *s) {
    const fw_route_opts *o = &s->o;
    if (!o->up_cmd) return;
    double now = fw_now();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_starting;) /* started long ago and never joined: failed to start */
        if (now - s->starting[i].t > o->start_timeout_s) {
            fprintf(stderr, "furrow route: autoscale: job %s did not join within %g s; no longer counted\n",
                    s->starting[i].job[0] ? s->starting[i].job : "(no id)", o->start_timeout_s);
            s->starting[i] = s->starting[--s->n_starting];
        } else {
            i++;
        }
    int up = 0;
    double queue = 0, ttft_sum = 0, ttft_n = 0;
    bool idle = true;
    for (fw_replica *r = s->reps; r; r = r->next) {
        if (!r->healthy || r->draining) {
            r->ttft_new_sum = r->ttft_new_n = 0;
            continue;
        }
        up++, queue += r->queue;
        if (r->queue || r->running || r->in_flight) idle = false;
        ttft_sum += r->ttft_new_sum, ttft_n += r->ttft_new_n;
        r->ttft_new_sum = r->ttft_new_n = 0; /* taken: the next round counts what comes next */
    }
    int total = up + s->n_starting;
    s->mean_queue = up ? queue / up : 0;
    if (ttft_n > 0) s->mean_ttft = ttft_sum / ttft_n;
    else if (idle) s->mean_ttft = 0;
    bool busy = up && s->mean_queue > o->up_queue;
    bool slow = up && o->up_ttft_s > 0 && s->mean_ttft > o->up_ttft_s;
    s->busy_since = busy ? (s->busy_since ? s->busy_since : now) : 0;
    s->slow_since = slow ? (s->slow_since ? s->slow_since : now) : 0;
    s->idle_since = idle && up ? (s->idle_since ? s->idle_since : now) : 0;
    bool cool = !s->last_action || now - s->last_action >= o->cooldown_s;
    char why[200] = "", job[64] = "", url[256] = "";
    int action = 0; /* 1 up, -1 down */
    if (cool && total < o->min_replicas) {
        action = 1;
        snprintf(why, sizeof why, "%d in service or starting, below --min-replicas %d", total, o->min_replicas);
    } else if (cool && s->busy_since && now - s->busy_since >= o->window_s && total < o->max_replicas) {
        action = 1;
        snprintf(why, sizeof why, "mean queue depth %.3g above %g for %.0f s; %d in service, %d starting",
                 s->mean_queue, o->up_queue, now - s->busy_since, up, s->n_starting);
    } else if (cool && s->slow_since && now - s->slow_since >= o->window_s && total < o->max_replicas) {
        action = 1;
        snprintf(why, sizeof why, "mean time to first token %.0f ms above --scale-latency-ms %.0f for %.0f s; %d in "
                 "service, %d starting", 1e3 * s->mean_ttft, 1e3 * o->up_ttft_s, now - s->slow_since, up, s->n_starting);
    } else if (cool && s->idle_since && now - s->idle_since >= o->window_s && up > o->min_replicas &&
               !s->n_starting) {
        fw_replica *r = idle_one(s);
        if (r) {
            action = -1;
            r->held = r->draining = true; /* no new request while it stops */
            snprintf(job, sizeof job, "%s", r->job);
            snprintf(url, sizeof url, "%s", r->url);
            snprintf(why, sizeof why, "every replica idle for %.0f s; %d in service, above --min-replicas %d",
                     now - s->idle_since, up, o->min_replicas);
        }
    }
    if (action) s->last_action = now, s->busy_since = s->idle_since = s->slow_since = 0;
    pthread_mutex_unlock(&s->mu);
    if (!action) return;

    bool ok;
    if (action > 0) {
        fprintf(stderr, "furrow route: autoscale: up: %s; running --scale-up\n", why);
        ok = run(o->up_cmd, NULL, NULL, job, sizeof job);
        fprintf(stderr, "furrow route: autoscale: up: %s%s\n", ok ? "started job " : "--scale-up failed",
                ok ? (job[0] ? job : "(no id printed)") : "");
    } else {
        fprintf(stderr, "furrow route: autoscale: down: %s; draining %s and stopping job %s (--scale-down)\n", why, url,
                job);
        ok = run(o->down_cmd, job, url, NULL, 0);
        if (!ok) fprintf(stderr, "furrow route: autoscale: down: --scale-down failed for job %s; resuming %s\n", job, url);
    }
    if (!ok && action < 0) fw_route_hold(s, url, false);
    pthread_mutex_lock(&s->mu);
    if (!ok) {
        s->scale_failures++;
    } else if (action > 0) {
        s->scale_ups++;
        if (s->n_starting < FW_MAX_STARTING) {
            fw_starting *st = &s->starting[s->n_starting++];
            snprintf(st->job, sizeof st->job, "%s", job);
            st->t = now;
        }
    } else {
        s->scale_downs++;
    }
    pthread_mutex_unlock(&s->mu);
}
