#include "runtime/dist/watchdog.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A rank's slot in the node's shared table: written by the rank (busy, what)
 * and by its watchdog thread (alive); read by the other ranks' threads. */
typedef struct slot {
    _Atomic int64_t alive_ns;  /* the thread's last tick: stale when the process is stopped */
    _Atomic int64_t busy_ns;   /* start of the outermost section, 0 when none */
    _Atomic(const char *) note; /* a static string, meaningful in this process only */
    int world_rank, pid;
    char what[160];
    char where[64];            /* the note, copied for the other ranks */
} slot;

struct fw_watchdog {
    const fw_world *w;
    double seconds;
    MPI_Win win;
    slot *table;               /* node-local ranks' slots */
    slot *mine;
    int depth;                 /* sections open (the main thread's) */
    pthread_t thread;
    pthread_mutex_t mu;        /* with wake: stop ends the thread's nap at once */
    pthread_cond_t wake;
    _Atomic int quit;
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);   /* one clock for every process of the node */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The other ranks of this node that look hung: appended to msg. */
static void peers(const fw_watchdog *wd, int64_t now, char *msg, size_t size) {
    size_t n = strlen(msg);
    for (int i = 0; i < wd->w->local_size && n < size; i++) {
        const slot *s = &wd->table[i];
        if (s == wd->mine) continue;
        double silent = (double)(now - atomic_load(&s->alive_ns)) / 1e9;
        int64_t busy = atomic_load(&s->busy_ns);
        double in = busy ? (double)(now - busy) / 1e9 : 0;
        if (silent > 1) /* its thread ticks every 0.1 s: a second of silence is a stopped process */
            n += (size_t)snprintf(msg + n, size - n, "; rank %d (pid %d) on this node is not running (stopped or "
                                  "dead: silent for %.1f s)", s->world_rank, s->pid, silent);
        else if (in > wd->seconds / 2)
            n += (size_t)snprintf(msg + n, size - n, "; rank %d (pid %d) has been %.0f s in %s%s%s", s->world_rank,
                                  s->pid, in, s->what, s->where[0] ? ", " : "", s->where);
    }
}

/* Waits 0.1 s, or less when stop asks the thread to end (the process's exit
 * would otherwise wait out the rest of a sleep); true when it should end. */
static bool nap(fw_watchdog *wd) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    pthread_mutex_lock(&wd->mu);
    while (!atomic_load(&wd->quit) && pthread_cond_timedwait(&wd->wake, &wd->mu, &until) == 0) {}
    bool quit = atomic_load(&wd->quit);
    pthread_mutex_unlock(&wd->mu);
    return quit;
}

static void *watch(void *arg) {
    fw_watchdog *wd = arg;
    slot *me = wd->mine;
    const int64_t bound = (int64_t)(wd->seconds * 1e9);
    while (!nap(wd)) {
        int64_t now = now_ns(), busy = atomic_load(&me->busy_ns);
        atomic_store(&me->alive_ns, now);
        const char *note = atomic_load(&me->note);
        snprintf(me->where, sizeof me->where, "%s", note ? note : "");
        if (!busy || now - busy < bound) continue;
        char msg[2048];
        snprintf(msg, sizeof msg, "no progress for %.0f s in %s%s%s", (double)(now - busy) / 1e9, me->what,
                 note ? ", " : "", note ? note : "");
        peers(wd, now, msg, sizeof msg);
        fprintf(stderr, "furrow watchdog: rank %d (%s): %s: a rank of the job is stopped, stuck or lost; ending the "
                "job (--watchdog %g)\n", wd->w->rank, wd->w->host, msg, wd->seconds);
        fflush(stderr);
        _exit(3); /* no MPI from this thread: the launcher ends the other ranks */
    }
    return NULL;
}

int fw_watchdog_start(fw_watchdog **out, const fw_world *w, double seconds, fw_err *e) {
    *out = NULL;
    if (!(seconds > 0)) return FW_OK;
    fw_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd) return fw_errf(e, "watchdog: out of memory");
    wd->w = w;
    wd->seconds = seconds;
    slot *base = NULL;
    if (MPI_Win_allocate_shared(w->local_rank == 0 ? (MPI_Aint)(w->local_size * sizeof(slot)) : 0, 1,
                                MPI_INFO_NULL, w->node_comm, &base, &wd->win) != MPI_SUCCESS) {
        free(wd);
        return fw_errf(e, "watchdog: cannot share memory between the ranks of this node");
    }
    MPI_Aint size;
    int disp;
    MPI_Win_shared_query(wd->win, 0, &size, &disp, &wd->table);
    wd->mine = &wd->table[w->local_rank];
    memset(wd->mine, 0, sizeof *wd->mine);
    wd->mine->world_rank = w->rank;
    wd->mine->pid = (int)getpid();
    atomic_store(&wd->mine->alive_ns, now_ns());
    MPI_Barrier(w->node_comm); /* every slot written before any thread reads it */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* nap's deadline */
    pthread_cond_init(&wd->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&wd->mu, NULL);
    int rc = pthread_create(&wd->thread, NULL, watch, wd);
    if (rc != 0) {
        pthread_cond_destroy(&wd->wake);
        pthread_mutex_destroy(&wd->mu);
        MPI_Win_free(&wd->win);
        free(wd);
        return fw_errf(e, "watchdog: cannot start its thread");
    }
    *out = wd;
    return FW_OK;
}

void fw_watchdog_stop(fw_watchdog *wd) {
    if (!wd) return;
    pthread_mutex_lock(&wd->mu);
    atomic_store(&wd->quit, 1);
    pthread_cond_signal(&wd->wake);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->wake);
    pthread_mutex_destroy(&wd->mu);
    MPI_Win_free(&wd->win);
    free(wd);
}

double fw_watchdog_seconds(const fw_watchdog *wd) { return wd ? wd->seconds : 0; }

void fw_watch_begin(fw_watchdog *wd, const char *what) {
    if (!wd || wd->depth++ > 0) return;
    slot *me = wd->mine;
    snprintf(me->what, sizeof me->what, "%s", what);
    atomic_store(&me->note, NULL);
    me->where[0] = '\0';
    atomic_store(&me->busy_ns, now_ns());
}

void fw_watch_note(fw_watchdog *wd, const char *where) {
    if (wd) atomic_store(&wd->mine->note, where);
}

void fw_watch_end(fw_watchdog *wd) {
    if (!wd || --wd->depth > 0) return;
    atomic_store(&wd->mine->busy_ns, 0);
}
