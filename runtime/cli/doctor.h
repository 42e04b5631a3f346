/* furrow doctor: node pre-flight checks. Each check adds one result (pass,
 * warn, fail or skip), what it found and, for warn and fail, the fix; the
 * command prints them as lines or as one JSON object. */
#ifndef FW_RUNTIME_CLI_DOCTOR_H
#define FW_RUNTIME_CLI_DOCTOR_H

#include <stdbool.h>
#include <stdint.h>

typedef enum fw_doctor_status {
    FW_DOCTOR_PASS,
    FW_DOCTOR_WARN,
    FW_DOCTOR_FAIL,
    FW_DOCTOR_SKIP,
} fw_doctor_status;

typedef struct fw_doctor_result {
    char name[32];
    fw_doctor_status status;
    char found[512];
    char fix[512]; /* empty for pass and skip */
} fw_doctor_result;

#define FW_DOCTOR_MAX_RESULTS 64

typedef struct fw_doctor {
    fw_doctor_result r[FW_DOCTOR_MAX_RESULTS];
    int n;
    /* Facts one group finds that another's verdict depends on. */
    int n_numa;     /* NUMA nodes hwloc sees (0: unknown) */
    int n_ib_ports; /* fw_doctor_ib_ports() */
} fw_doctor;

/* Adds a result; `fix` may be NULL. The found text is printf-style. */
void fw_doctor_add(fw_doctor *d, const char *name, fw_doctor_status s, const char *fix,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
const char *fw_doctor_status_name(fw_doctor_status s);

/* The InfiniBand ports in /sys/class/infiniband (doctor_net.c): counted
 * before the checks, as memlock, MPI and UCX judge by whether there are any. */
int fw_doctor_ib_ports(void);

/* The groups of checks, in the order they run and print. */
void fw_doctor_check_topo(fw_doctor *d);    /* doctor_topo.c */
void fw_doctor_check_kernel(fw_doctor *d);  /* doctor_kernel.c */
void fw_doctor_check_limits(fw_doctor *d);  /* doctor_kernel.c */
void fw_doctor_check_transports(fw_doctor *d); /* doctor_net.c */
void fw_doctor_check_ib(fw_doctor *d);      /* doctor_net.c */
void fw_doctor_check_gpus(fw_doctor *d);    /* doctor_gpu.c */
/* Reads up to max_bytes of the checkpoint's files (path: a file or a folder)
 * and judges the speed against min_gbs GB/s (doctor_disk.c). */
void fw_doctor_check_checkpoint(fw_doctor *d, const char *path, int64_t max_bytes, double min_gbs);

/* Reads the first line of a /proc or /sys file into buf, without its newline;
 * -1 if it cannot be read. */
int fw_doctor_read_line(const char *path, char *buf, size_t size);

#endif
