/* The node's energy counters: RAPL zones of the CPU packages (powercap sysfs,
 * intel-rapl:* and amd-rapl:*; AMD Zen CPUs also show up as intel-rapl since
 * Linux 5.8) in microjoules, wrapping at max_energy_range_uj, and the GPUs'
 * counters through NVML (nvmlDeviceGetTotalEnergyConsumption, millijoules
 * since the driver loaded), with libnvidia-ml loaded at run time so nothing
 * links it. Each sample adds the counters' progress since the last one to a
 * total per domain; a sampler thread keeps sampling often enough that a RAPL
 * counter cannot wrap twice between two samples. Counters are node-wide: they
 * include whatever else runs on the node. */
#ifndef FW_RUNTIME_DIST_ENERGY_H
#define FW_RUNTIME_DIST_ENERGY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define FW_ENERGY_MAX_DOMAINS 32

typedef enum fw_energy_source { FW_ENERGY_RAPL, FW_ENERGY_NVML } fw_energy_source;

typedef struct fw_energy_domain {
    fw_energy_source source;
    char name[64];             /* RAPL: "package-0", "package-0/dram", "psys"; NVML: "gpu0" */
    bool package;              /* a top-level CPU package zone (what the CPU's figure sums) */
    char file[512];            /* RAPL: its energy_uj */
    unsigned index;            /* NVML: the device index */
    uint64_t last;             /* the last raw reading */
    uint64_t range;            /* RAPL: max_energy_range_uj (readings wrap past it); NVML: 0 */
    double joules;             /* progress since the meter opened */
} fw_energy_domain;

typedef struct fw_energy {
    pthread_mutex_t mu;        /* every field below */
    fw_energy_domain d[FW_ENERGY_MAX_DOMAINS];
    int n;
    /* Why a source has no domain ("" when it has some). */
    char rapl_why[200], nvml_why[200];
    void *nvml_lib;            /* dlopen handle, or NULL */
    void *nvml_dev[FW_ENERGY_MAX_DOMAINS]; /* nvmlDevice_t of each NVML domain, by its index */
    int (*nvml_shutdown)(void);
    int (*nvml_energy)(void *dev, unsigned long long *mj);
    pthread_t sampler;
    pthread_cond_t wake;
    bool sampler_on, stop;
} fw_energy;

/* Opens the meter on the powercap sysfs folder (/sys/class/powercap) and, when
 * nvml, the GPUs. A source that cannot be read leaves its reason in
 * rapl_why / nvml_why; a meter with no domain is still valid (all totals 0). */
void fw_energy_open(fw_energy *m, bool nvml);
/* The same on another powercap folder (a test's fake sysfs). */
void fw_energy_open_at(fw_energy *m, const char *powercap_root, bool nvml);
/* Starts a thread sampling every interval_s seconds; false if it cannot start. */
bool fw_energy_start(fw_energy *m, double interval_s);
/* Reads every counter now and adds its progress to the totals. */
void fw_energy_sample(fw_energy *m);
/* Samples, then the totals since the meter opened: of the CPU package zones,
 * and of the GPUs; -1 for a source with no domain. */
void fw_energy_totals(fw_energy *m, double *cpu_j, double *gpu_j);
/* Stops the sampler, unloads NVML. */
void fw_energy_close(fw_energy *m);

/* A counter's progress from prev to cur, for one that wraps to 0 past range
 * (range 0: it does not wrap; a reading below the last one is then a reset: 0). */
uint64_t fw_energy_delta(uint64_t prev, uint64_t cur, uint64_t range);

#endif
