/* The node's energy counters (energy.h). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dist/energy.h"

#define NVML_OK 0

uint64_t fw_energy_delta(uint64_t prev, uint64_t cur, uint64_t range) {
    if (cur >= prev) return cur - prev;
    if (!range || prev > range) return 0; /* not a wrap: a reset, or a range the zone lied about */
    return range - prev + cur;
}

/* The first line of a small sysfs file into buf; false if it cannot be read (errno set). */
static bool read_line(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    if (!ok && !errno) errno = EIO;
    fclose(f);
    if (ok) buf[strcspn(buf, "\r\n")] = 0;
    return ok;
}

static bool read_u64(const char *path, uint64_t *v) {
    char b[64], *end;
    if (!read_line(path, b, sizeof b)) return false;
    errno = 0;
    unsigned long long x = strtoull(b, &end, 10);
    if (errno || end == b) {
        errno = EINVAL;
        return false;
    }
    *v = (uint64_t)x;
    return true;
}

/* A powercap zone folder name of a RAPL zone: intel-rapl:P or intel-rapl:P:S (amd-rapl alike). */
static bool rapl_zone(const char *name, bool *top) {
    const char *rest = !strncmp(name, "intel-rapl:", 11) ? name + 11 : !strncmp(name, "amd-rapl:", 9) ? name + 9 : NULL;
    if (!rest || !*rest) return false;
    *top = strchr(rest, ':') == NULL;
    return true;
}

/* The RAPL zones under root, top-level zones before their subzones' names
 * are known: a subzone is named after its package ("package-0/dram"). */
static void open_rapl(fw_energy *m, const char *root) {
    DIR *d = opendir(root);
    if (!d) {
        snprintf(m->rapl_why, sizeof m->rapl_why, "no RAPL: %s: %s", root, strerror(errno));
        return;
    }
    struct dirent *de;
    int seen = 0, unreadable = 0, err = 0;
    char names[2][FW_ENERGY_MAX_DOMAINS][256]; /* folder name, zone name, of the top-level zones */
    int n_top = 0;
    for (int pass = 0; pass < 2; pass++) { /* top-level zones first, then subzones */
        rewinddir(d);
        while ((de = readdir(d)) && m->n < FW_ENERGY_MAX_DOMAINS) {
            bool top;
            if (!rapl_zone(de->d_name, &top) || top != (pass == 0)) continue;
            seen++;
            fw_energy_domain z = {.source = FW_ENERGY_RAPL, .package = false};
            char path[600], zname[48] = "";
            snprintf(path, sizeof path, "%s/%s/name", root, de->d_name);
            if (!read_line(path, zname, sizeof zname)) snprintf(zname, sizeof zname, "%.47s", de->d_name);
            if (top) {
                snprintf(z.name, sizeof z.name, "%s", zname);
                z.package = !strncmp(zname, "package", 7);
                if (n_top < FW_ENERGY_MAX_DOMAINS) {
                    snprintf(names[0][n_top], sizeof names[0][0], "%s", de->d_name);
                    snprintf(names[1][n_top], sizeof names[1][0], "%s", zname);
                    n_top++;
                }
            } else {
                const char *parent = "";
                size_t k = (size_t)(strrchr(de->d_name, ':') - de->d_name);
                for (int i = 0; i < n_top; i++)
                    if (strlen(names[0][i]) == k && !strncmp(names[0][i], de->d_name, k)) parent = names[1][i];
                snprintf(z.name, sizeof z.name, "%s%s%s", parent, *parent ? "/" : "", zname);
            }
            snprintf(z.file, sizeof z.file, "%s/%s/energy_uj", root, de->d_name);
            snprintf(path, sizeof path, "%s/%s/max_energy_range_uj", root, de->d_name);
            errno = 0;
            if (!read_u64(z.file, &z.last)) {
                unreadable++, err = errno;
                continue;
            }
            if (!read_u64(path, &z.range)) z.range = 0; /* no range given: a drop is a reset, not a wrap */
            m->d[m->n++] = z;
        }
    }
    closedir(d);
    if (!seen) snprintf(m->rapl_why, sizeof m->rapl_why, "no RAPL zones under %s", root);
    else if (unreadable && !m->n)
        snprintf(m->rapl_why, sizeof m->rapl_why, "RAPL: %d zone(s) under %s, energy_uj unreadable (%s%s)", seen, root,
                 strerror(err), err == EACCES ? "; root only since Linux 5.10: a udev rule or chmod can open it" : "");
}

/* NVML through dlopen: the GPUs whose driver keeps an energy counter (Volta and later). */
static void open_nvml(fw_energy *m) {
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(m->nvml_why, sizeof m->nvml_why, "no NVML: cannot load libnvidia-ml.so.1 (no NVIDIA driver)");
        return;
    }
    int (*init)(void) = (int (*)(void))dlsym(lib, "nvmlInit_v2");
    int (*count)(unsigned *) = (int (*)(unsigned *))dlsym(lib, "nvmlDeviceGetCount_v2");
    int (*handle)(unsigned, void **) = (int (*)(unsigned, void **))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    m->nvml_shutdown = (int (*)(void))dlsym(lib, "nvmlShutdown");
    m->nvml_energy = (int (*)(void *, unsigned long long *))dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption");
    unsigned n = 0;
    if (!init || !count || !handle || !m->nvml_shutdown || !m->nvml_energy) {
        snprintf(m->nvml_why, sizeof m->nvml_why, "NVML: libnvidia-ml.so.1 lacks the energy counter (driver too old)");
    } else if (init() != NVML_OK) {
        snprintf(m->nvml_why, sizeof m->nvml_why, "NVML: nvmlInit failed (driver not loaded?)");
    } else {
        m->nvml_lib = lib;
        if (count(&n) != NVML_OK) n = 0;
        int before = m->n;
        for (unsigned i = 0; i < n && m->n < FW_ENERGY_MAX_DOMAINS; i++) {
            void *dev;
            unsigned long long mj;
            if (handle(i, &dev) != NVML_OK || m->nvml_energy(dev, &mj) != NVML_OK) continue; /* pre-Volta: none */
            fw_energy_domain *z = &m->d[m->n];
            *z = (fw_energy_domain){.source = FW_ENERGY_NVML, .index = (unsigned)m->n, .last = mj};
            snprintf(z->name, sizeof z->name, "gpu%u", i);
            m->nvml_dev[m->n++] = dev;
        }
        if (m->n == before)
            snprintf(m->nvml_why, sizeof m->nvml_why, "NVML: %u GPU(s), none with an energy counter", n);
        return;
    }
    dlclose(lib);
    m->nvml_shutdown = NULL, m->nvml_energy = NULL;
}

void fw_energy_open_at(fw_energy *m, const char *powercap_root, bool nvml) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->wake, NULL);
    open_rapl(m, powercap_root);
    if (nvml) open_nvml(m);
    else snprintf(m->nvml_why, sizeof m->nvml_why, "NVML not asked for");
}

void fw_energy_open(fw_energy *m, bool nvml) { fw_energy_open_at(m, "/sys/class/powercap", nvml); }

/* Under m->mu. */
static void sample_locked(fw_energy *m) {
    for (int i = 0; i < m->n; i++) {
        fw_energy_domain *z = &m->d[i];
        uint64_t v;
        if (z->source == FW_ENERGY_RAPL) {
            if (!read_u64(z->file, &v)) continue;
            z->joules += (double)fw_energy_delta(z->last, v, z->range) * 1e-6;
        } else {
            unsigned long long mj;
            if (m->nvml_energy(m->nvml_dev[z->index], &mj) != NVML_OK) continue;
            v = mj;
            z->joules += (double)fw_energy_delta(z->last, v, 0) * 1e-3;
        }
        z->last = v;
    }
}

void fw_energy_sample(fw_energy *m) {
    pthread_mutex_lock(&m->mu);
    sample_locked(m);
    pthread_mutex_unlock(&m->mu);
}

void fw_energy_totals(fw_energy *m, double *cpu_j, double *gpu_j) {
    pthread_mutex_lock(&m->mu);
    sample_locked(m);
    double c = -1, g = -1;
    for (int i = 0; i < m->n; i++) {
        const fw_energy_domain *z = &m->d[i];
        if (z->source == FW_ENERGY_NVML) g = (g < 0 ? 0 : g) + z->joules;
        else if (z->package) c = (c < 0 ? 0 : c) + z->joules;
    }
    pthread_mutex_unlock(&m->mu);
    *cpu_j = c, *gpu_j = g;
}

typedef struct sampler_arg {
    fw_energy *m;
    double interval;
} sampler_arg;

static void *sampler(void *arg) {
    fw_energy *m = ((sampler_arg *)arg)->m;
    double iv = ((sampler_arg *)arg)->interval;
    free(arg);
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double at = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + iv;
        ts.tv_sec = (time_t)at, ts.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
        pthread_cond_timedwait(&m->wake, &m->mu, &ts);
        if (!m->stop) sample_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

bool fw_energy_start(fw_energy *m, double interval_s) {
    if (m->sampler_on || !m->n) return m->sampler_on || !m->n; /* nothing to sample: no thread */
    sampler_arg *a = malloc(sizeof *a);
    if (!a) return false;
    *a = (sampler_arg){m, interval_s};
    if (pthread_create(&m->sampler, NULL, sampler, a)) {
        free(a);
        return false;
    }
    m->sampler_on = true;
    return true;
}

void fw_energy_close(fw_energy *m) {
    if (m->sampler_on) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_signal(&m->wake);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->sampler, NULL);
        m->sampler_on = false;
    }
    if (m->nvml_lib) {
        m->nvml_shutdown();
        dlclose(m->nvml_lib);
        m->nvml_lib = NULL;
    }
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->wake);
}
