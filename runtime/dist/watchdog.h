/* The hang watchdog of a rank: a thread that ends the job when this rank has
 * been inside one watched section (a step, a collective, a wait for the next
 * step plan) longer than the bound, with a message naming what it was doing
 * and, from node-local shared memory, which ranks of the node are not running
 * (stopped, or stuck in the kernel) or are stuck in a section of their own.
 * The thread calls no MPI: it ends the process, and the launcher (mpirun,
 * srun --kill-on-bad-exit) ends the rest of the job. */
#ifndef FW_RUNTIME_DIST_WATCHDOG_H
#define FW_RUNTIME_DIST_WATCHDOG_H

#include "io/base/err.h"
#include "runtime/dist/world.h"

typedef struct fw_watchdog fw_watchdog;

/* Starts this rank's watchdog with a bound of `seconds`; seconds <= 0 gives none
 * (*out = NULL, which every call below accepts). Collective over the world. */
int fw_watchdog_start(fw_watchdog **out, const fw_world *w, double seconds, fw_err *e);
/* Collective over the world, like the start. */
void fw_watchdog_stop(fw_watchdog *wd);
double fw_watchdog_seconds(const fw_watchdog *wd);

/* A watched section: `what` says what this rank is doing ("step 12: 3
 * sequences, 40 tokens"). Sections nest; the outermost one is timed. */
void fw_watch_begin(fw_watchdog *wd, const char *what);
/* Where inside the section it is now ("the TP all-reduce"); a static string. */
void fw_watch_note(fw_watchdog *wd, const char *where);
void fw_watch_end(fw_watchdog *wd);

#endif
