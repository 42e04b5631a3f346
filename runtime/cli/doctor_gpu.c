/* furrow doctor: the GPUs, through NVML. libnvidia-ml.so.1 comes with the
 * driver, not the toolkit, so it is opened at run time: any build (plain
 * furrow too, which the Slurm prolog runs) checks the node's GPUs, and a node
 * without the driver skips these checks. The few NVML declarations needed are
 * below, from nvml.h's stable ABI. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cli/doctor.h"

typedef struct nvml_device *nvml_dev; /* nvmlDevice_t */
enum {
    NVML_OK = 0,
    NVML_FEATURE_ENABLED = 1,
    NVML_MEMORY_ERROR_UNCORRECTED = 1,
    NVML_VOLATILE_ECC = 0,
    NVML_CLOCK_SM = 1,
    NVML_TEMPERATURE_GPU = 0,
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1,
    NVML_NVLINK_MAX_LINKS = 18,
};
/* Throttle reasons that mean the hardware is slowing down (not idle or app clocks). */
#define NVML_THROTTLE_BAD (0x8ULL /* HW slowdown */ | 0x20ULL /* SW thermal */ | 0x40ULL /* HW thermal */ | \
                           0x80ULL /* power brake */)

typedef struct nvml {
    void *lib;
    int (*init)(void);
    int (*shutdown)(void);
    const char *(*error_string)(int);
    int (*driver_version)(char *, unsigned);
    int (*count)(unsigned *);
    int (*handle)(unsigned, nvml_dev *);
    int (*persistence)(nvml_dev, int *);
    int (*ecc_mode)(nvml_dev, int *, int *);
    int (*ecc_errors)(nvml_dev, int, int, unsigned long long *);
    int (*clock)(nvml_dev, int, unsigned *);
    int (*max_clock)(nvml_dev, int, unsigned *);
    int (*throttle)(nvml_dev, unsigned long long *);
    int (*temperature)(nvml_dev, int, unsigned *);
    int (*temp_threshold)(nvml_dev, int, unsigned *);
    int (*nvlink_state)(nvml_dev, unsigned, int *);
    int (*pcie_width)(nvml_dev, unsigned *);
    int (*pcie_max_width)(nvml_dev, unsigned *);
    int (*pcie_gen)(nvml_dev, unsigned *);
    int (*pcie_max_gen)(nvml_dev, unsigned *);
} nvml;

static int nvml_open(nvml *m, char *why, size_t size) {
    m->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!m->lib) {
        snprintf(why, size, "no NVIDIA driver: cannot load libnvidia-ml.so.1");
        return -1;
    }
    struct {
        void **fn;
        const char *name;
    } syms[] = {
        {(void **)&m->init, "nvmlInit_v2"},
        {(void **)&m->shutdown, "nvmlShutdown"},
        {(void **)&m->error_string, "nvmlErrorString"},
        {(void **)&m->driver_version, "nvmlSystemGetDriverVersion"},
        {(void **)&m->count, "nvmlDeviceGetCount_v2"},
        {(void **)&m->handle, "nvmlDeviceGetHandleByIndex_v2"},
        {(void **)&m->persistence, "nvmlDeviceGetPersistenceMode"},
        {(void **)&m->ecc_mode, "nvmlDeviceGetEccMode"},
        {(void **)&m->ecc_errors, "nvmlDeviceGetTotalEccErrors"},
        {(void **)&m->clock, "nvmlDeviceGetClockInfo"},
        {(void **)&m->max_clock, "nvmlDeviceGetMaxClockInfo"},
        {(void **)&m->throttle, "nvmlDeviceGetCurrentClocksThrottleReasons"},
        {(void **)&m->temperature, "nvmlDeviceGetTemperature"},
        {(void **)&m->temp_threshold, "nvmlDeviceGetTemperatureThreshold"},
        {(void **)&m->nvlink_state, "nvmlDeviceGetNvLinkState"},
        {(void **)&m->pcie_width, "nvmlDeviceGetCurrPcieLinkWidth"},
        {(void **)&m->pcie_max_width, "nvmlDeviceGetMaxPcieLinkWidth"},
        {(void **)&m->pcie_gen, "nvmlDeviceGetCurrPcieLinkGeneration"},
        {(void **)&m->pcie_max_gen, "nvmlDeviceGetMaxPcieLinkGeneration"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].fn = dlsym(m->lib, syms[i].name);
        if (!*syms[i].fn) {
            snprintf(why, size, "libnvidia-ml.so.1 lacks %s (driver too old)", syms[i].name);
            dlclose(m->lib);
            return -1;
        }
    }
    int rc = m->init();
    if (rc != NVML_OK) {
        snprintf(why, size, "nvmlInit: %s", m->error_string(rc));
        dlclose(m->lib);
        return -1;
    }
    return 0;
}

/* The GPU checks, each over every GPU: one line per check, naming the GPUs at fault. */
#define GPU_CHECKS 6
static const char *gpu_check_names[GPU_CHECKS] = {"gpu-persistence", "gpu-ecc",   "gpu-clocks",
                                                  "gpu-temperature", "gpu-nvlink", "gpu-pcie"};

typedef struct gpu_check {
    fw_doctor_status status;
    char found[480];
    size_t k;
} gpu_check;

/* Appends "GPU i: text" to a check's findings and raises its status. */
static void note(gpu_check *c, fw_doctor_status s, unsigned gpu, const char *text) {
    if (s == FW_DOCTOR_FAIL || (s == FW_DOCTOR_WARN && c->status == FW_DOCTOR_PASS)) c->status = s;
    if (c->k < sizeof c->found - 64)
        c->k += (size_t)snprintf(c->found + c->k, sizeof c->found - c->k, "%sGPU %u %s", c->k ? "; " : "", gpu, text);
}

static void check_gpu(nvml *m, unsigned i, gpu_check c[GPU_CHECKS]) {
    nvml_dev dev;
    char t[160];
    if (m->handle(i, &dev) != NVML_OK) {
        for (int k = 0; k < GPU_CHECKS; k++) note(&c[k], FW_DOCTOR_FAIL, i, "unreachable (nvmlDeviceGetHandleByIndex)");
        return;
    }
    int on = 0, pending = 0;
    if (m->persistence(dev, &on) == NVML_OK) note(&c[0], on ? FW_DOCTOR_PASS : FW_DOCTOR_WARN, i, on ? "on" : "off");
    else note(&c[0], FW_DOCTOR_PASS, i, "n/a");

    unsigned long long errs = 0;
    if (m->ecc_mode(dev, &on, &pending) != NVML_OK) note(&c[1], FW_DOCTOR_PASS, i, "no ECC");
    else if (!on) note(&c[1], FW_DOCTOR_WARN, i, "ECC off");
    else if (m->ecc_errors(dev, NVML_MEMORY_ERROR_UNCORRECTED, NVML_VOLATILE_ECC, &errs) == NVML_OK && errs) {
        snprintf(t, sizeof t, "%llu uncorrected ECC error(s) since boot", errs);
        note(&c[1], FW_DOCTOR_FAIL, i, t);
    } else note(&c[1], FW_DOCTOR_PASS, i, "ECC on, 0 uncorrected");

    unsigned sm = 0, sm_max = 0;
    unsigned long long why = 0;
    m->clock(dev, NVML_CLOCK_SM, &sm);
    m->max_clock(dev, NVML_CLOCK_SM, &sm_max);
    int slowed = m->throttle(dev, &why) == NVML_OK && (why & NVML_THROTTLE_BAD);
    snprintf(t, sizeof t, "SM %u/%u MHz%s", sm, sm_max, slowed ? ", slowed down (thermal or power brake)" : "");
    note(&c[2], slowed ? FW_DOCTOR_WARN : FW_DOCTOR_PASS, i, t);

    unsigned temp = 0, slow = 0;
    if (m->temperature(dev, NVML_TEMPERATURE_GPU, &temp) != NVML_OK) note(&c[3], FW_DOCTOR_PASS, i, "n/a");
    else {
        int have = m->temp_threshold(dev, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN, &slow) == NVML_OK && slow;
        /* Within 10 C of the slowdown threshold before any work starts. */
        int hot = have ? temp + 10 >= slow : temp >= 85;
        if (have) snprintf(t, sizeof t, "%u C (slowdown at %u C)", temp, slow);
        else snprintf(t, sizeof t, "%u C", temp);
        note(&c[3], hot ? FW_DOCTOR_WARN : FW_DOCTOR_PASS, i, t);
    }

    int links = 0, active = 0;
    for (unsigned l = 0; l < NVML_NVLINK_MAX_LINKS; l++) {
        int st = 0;
        if (m->nvlink_state(dev, l, &st) != NVML_OK) continue; /* no such link */
        links++;
        active += st == NVML_FEATURE_ENABLED;
    }
    snprintf(t, sizeof t, links ? "%d/%d NVLinks up" : "no NVLink", active, links);
    note(&c[4], active < links ? FW_DOCTOR_WARN : FW_DOCTOR_PASS, i, t);

    /* An idle GPU may drop its PCIe generation to save power; a narrower link
     * than it can train at is a seating or riser fault. */
    unsigned w = 0, wmax = 0, g = 0, gmax = 0;
    m->pcie_width(dev, &w);
    m->pcie_max_width(dev, &wmax);
    m->pcie_gen(dev, &g);
    m->pcie_max_gen(dev, &gmax);
    snprintf(t, sizeof t, "x%u (max x%u) gen %u (max %u)", w, wmax, g, gmax);
    note(&c[5], w < wmax ? FW_DOCTOR_WARN : FW_DOCTOR_PASS, i, t);
}

void fw_doctor_check_gpus(fw_doctor *d) {
    static const char *fixes[GPU_CHECKS] = {
        "nvidia-smi -pm 1 (or run nvidia-persistenced)",
        "uncorrected errors: drain the node and reset the GPU (nvidia-smi -r -i N); ECC off: nvidia-smi -e 1 and reboot",
        "check cooling and power (nvidia-smi -q -d PERFORMANCE)",
        "check the node's cooling before starting work (nvidia-smi -q -d TEMPERATURE)",
        "nvidia-smi nvlink -s; a link down needs the fabric manager (systemctl status nvidia-fabricmanager) or service",
        "reseat the GPU or its riser (nvidia-smi -q -d PCI shows the link)",
    };
    nvml m;
    char why[256];
    unsigned n = 0;
    if (nvml_open(&m, why, sizeof why)) {
        fw_doctor_add(d, "gpu-driver", FW_DOCTOR_SKIP, NULL, "%s", why);
        for (int k = 0; k < GPU_CHECKS; k++) fw_doctor_add(d, gpu_check_names[k], FW_DOCTOR_SKIP, NULL, "%s", why);
        return;
    }
    char version[96] = "?";
    m.driver_version(version, sizeof version);
    int rc = m.count(&n);
    if (rc != NVML_OK || n == 0) {
        fw_doctor_add(d, "gpu-driver", rc == NVML_OK ? FW_DOCTOR_SKIP : FW_DOCTOR_FAIL, "nvidia-smi; check the driver",
                      "driver %s, %s", version, rc == NVML_OK ? "no GPUs" : m.error_string(rc));
        for (int k = 0; k < GPU_CHECKS; k++) fw_doctor_add(d, gpu_check_names[k], FW_DOCTOR_SKIP, NULL, "no GPUs");
    } else {
        fw_doctor_add(d, "gpu-driver", FW_DOCTOR_PASS, NULL, "driver %s, %u GPU(s)", version, n);
        gpu_check c[GPU_CHECKS];
        memset(c, 0, sizeof c);
        for (unsigned i = 0; i < n; i++) check_gpu(&m, i, c);
        for (int k = 0; k < GPU_CHECKS; k++) fw_doctor_add(d, gpu_check_names[k], c[k].status, fixes[k], "%s", c[k].found);
    }
    m.shutdown();
    dlclose(m.lib);
}
