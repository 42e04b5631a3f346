/* furrow doctor: the kernel's settings (/proc/sys, /sys) and the process limits
 * that a node serving a large model wants. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runtime/cli/doctor.h"
#include "runtime/dist/energy.h"

/* Automatic NUMA balancing migrates pages of ranks that are already bound to a
 * NUMA node: page faults and copies in the middle of a step. */
static void check_numa_balancing(fw_doctor *d) {
    char v[64];
    if (fw_doctor_read_line("/proc/sys/kernel/numa_balancing", v, sizeof v)) {
        fw_doctor_add(d, "numa-balancing", FW_DOCTOR_SKIP, NULL,
                      "no /proc/sys/kernel/numa_balancing (kernel without automatic NUMA balancing)");
        return;
    }
    if (!strcmp(v, "0")) fw_doctor_add(d, "numa-balancing", FW_DOCTOR_PASS, NULL, "off");
    else if (d->n_numa == 1)
        fw_doctor_add(d, "numa-balancing", FW_DOCTOR_PASS, NULL, "on (%s), but one NUMA node: nothing to migrate", v);
    else
        fw_doctor_add(d, "numa-balancing", FW_DOCTOR_WARN, "sysctl -w kernel.numa_balancing=0",
                      "on (%s): the kernel migrates pages of ranks bound to their NUMA node", v);
}

/* furrow does not madvise its buffers, so with "madvise" or "never" the
 * weights sit on 4 KiB pages: TLB misses on every weight read of the CPU backend. */
static void check_thp(fw_doctor *d) {
    char v[128];
    const char *fix = "echo always > /sys/kernel/mm/transparent_hugepage/enabled";
    if (fw_doctor_read_line("/sys/kernel/mm/transparent_hugepage/enabled", v, sizeof v)) {
        fw_doctor_add(d, "transparent-hugepages", FW_DOCTOR_SKIP, NULL,
                      "no /sys/kernel/mm/transparent_hugepage/enabled (kernel without THP)");
        return;
    }
    const char *open = strchr(v, '['), *close = open ? strchr(open, ']') : NULL;
    if (!open || !close) {
        fw_doctor_add(d, "transparent-hugepages", FW_DOCTOR_SKIP, NULL, "unreadable setting '%s'", v);
        return;
    }
    char mode[32];
    snprintf(mode, sizeof mode, "%.*s", (int)(close - open - 1), open + 1);
    if (!strcmp(mode, "always")) fw_doctor_add(d, "transparent-hugepages", FW_DOCTOR_PASS, NULL, "always");
    else
        fw_doctor_add(d, "transparent-hugepages", FW_DOCTOR_WARN, fix,
                      "%s: furrow does not madvise its weights, so they get 4 KiB pages (TLB misses)", mode);
}

/* A node that swaps a rank's weights or KV cache stalls its whole group. */
static void check_swappiness(fw_doctor *d) {
    char v[64];
    if (fw_doctor_read_line("/proc/sys/vm/swappiness", v, sizeof v)) {
        fw_doctor_add(d, "swappiness", FW_DOCTOR_SKIP, NULL, "no /proc/sys/vm/swappiness");
        return;
    }
    int s = atoi(v);
    if (s <= 10) fw_doctor_add(d, "swappiness", FW_DOCTOR_PASS, NULL, "vm.swappiness %d", s);
    else
        fw_doctor_add(d, "swappiness", FW_DOCTOR_WARN, "sysctl -w vm.swappiness=1",
                      "vm.swappiness %d (above 10: the kernel swaps anonymous memory early)", s);
}

/* TCP transports (UCX over TCP, Open MPI's btl tcp, the HTTP server) need
 * buffers of a bandwidth-delay product; 16 MiB covers 100 Gb/s in a data centre. */
#define FW_DOCTOR_MIN_SOCKBUF (16L << 20)
static void check_socket_buffers(fw_doctor *d) {
    char r[64], w[64];
    if (fw_doctor_read_line("/proc/sys/net/core/rmem_max", r, sizeof r) ||
        fw_doctor_read_line("/proc/sys/net/core/wmem_max", w, sizeof w)) {
        fw_doctor_add(d, "socket-buffers", FW_DOCTOR_SKIP, NULL,
                      "no /proc/sys/net/core/{rmem,wmem}_max (a network namespace without them)");
        return;
    }
    long rm = atol(r), wm = atol(w);
    if (rm >= FW_DOCTOR_MIN_SOCKBUF && wm >= FW_DOCTOR_MIN_SOCKBUF)
        fw_doctor_add(d, "socket-buffers", FW_DOCTOR_PASS, NULL, "net.core.rmem_max %ld, wmem_max %ld", rm, wm);
    else
        fw_doctor_add(d, "socket-buffers", FW_DOCTOR_WARN,
                      "sysctl -w net.core.rmem_max=67108864 net.core.wmem_max=67108864",
                      "net.core.rmem_max %ld, wmem_max %ld (under 16 MiB: TCP transports cannot fill a fast link)",
                      rm, wm);
}

/* "powersave" or "ondemand" clocks the cores down between steps. */
static void check_governor(fw_doctor *d) {
    DIR *dir = opendir("/sys/devices/system/cpu");
    int n = 0, perf = 0;
    char other[64] = "";
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        char path[320], g[64];
        if (strncmp(de->d_name, "cpu", 3) || de->d_name[3] < '0' || de->d_name[3] > '9') continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/cpufreq/scaling_governor", de->d_name);
        if (fw_doctor_read_line(path, g, sizeof g)) continue;
        n++;
        if (!strcmp(g, "performance")) perf++;
        else if (!other[0]) snprintf(other, sizeof other, "%s", g);
    }
    if (dir) closedir(dir);
    if (n == 0)
        fw_doctor_add(d, "cpu-governor", FW_DOCTOR_SKIP, NULL,
                      "no cpufreq in /sys (a VM or container, or the firmware sets the clocks)");
    else if (perf == n) fw_doctor_add(d, "cpu-governor", FW_DOCTOR_PASS, NULL, "performance on %d CPUs", n);
    else
        fw_doctor_add(d, "cpu-governor", FW_DOCTOR_WARN, "cpupower frequency-set -g performance",
                      "%d of %d CPUs not on performance (e.g. %s)", n - perf, n, other);
}

/* RAPL energy counters, for the J/token of furrow bench and serve's /metrics:
 * root-only since Linux 5.10 (a side channel), so a service user cannot read
 * them unless the site opens them. */
static void check_energy(fw_doctor *d) {
    fw_energy m;
    fw_energy_open(&m, false);
    char names[256] = "";
    size_t k = 0;
    for (int i = 0; i < m.n && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", m.d[i].name);
    if (m.n)
        fw_doctor_add(d, "energy-counters", FW_DOCTOR_PASS, NULL, "RAPL readable: %s", names);
    else if (strstr(m.rapl_why, "unreadable"))
        fw_doctor_add(d, "energy-counters", FW_DOCTOR_WARN,
                      "chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj (or a udev rule doing it at boot)",
                      "%s: no CPU energy per token", m.rapl_why);
    else
        fw_doctor_add(d, "energy-counters", FW_DOCTOR_SKIP, NULL, "%s", m.rapl_why);
    fw_energy_close(&m);
}

void fw_doctor_check_kernel(fw_doctor *d) {
    check_numa_balancing(d);
    check_thp(d);
    check_swappiness(d);
    check_socket_buffers(d);
    check_governor(d);
    check_energy(d);
}

/* A limit as `ulimit` shows it: in units of `unit` bytes. */
static void limit_text(rlim_t v, rlim_t unit, char *buf, size_t size) {
    if (v == RLIM_INFINITY) snprintf(buf, size, "unlimited");
    else snprintf(buf, size, "%llu", (unsigned long long)(v / unit));
}

/* RDMA registers (pins) every buffer it sends from: UCX and MPI over
 * InfiniBand need memlock unlimited, or large transfers fail to register. */
static void check_memlock(fw_doctor *d) {
    struct rlimit l;
    getrlimit(RLIMIT_MEMLOCK, &l);
    char soft[32], hard[32];
    limit_text(l.rlim_cur, 1024, soft, sizeof soft);
    limit_text(l.rlim_max, 1024, hard, sizeof hard);
    const char *fix = l.rlim_max == RLIM_INFINITY
                          ? "ulimit -l unlimited (before starting the ranks)"
                          : "'* - memlock unlimited' in /etc/security/limits.conf; under Slurm also "
                            "LimitMEMLOCK=infinity in slurmd's systemd unit";
    if (l.rlim_cur == RLIM_INFINITY)
        fw_doctor_add(d, "memlock", FW_DOCTOR_PASS, NULL, "unlimited");
    else if (d->n_ib_ports > 0)
        fw_doctor_add(d, "memlock", FW_DOCTOR_FAIL, fix,
                      "%s KiB (hard %s) with %d InfiniBand port(s): RDMA needs unlimited", soft, hard, d->n_ib_ports);
    else
        fw_doctor_add(d, "memlock", FW_DOCTOR_WARN, fix,
                      "%s KiB (hard %s): RDMA needs unlimited (no InfiniBand here)", soft, hard);
}

/* Each rank opens its checkpoint's files, MPI/UCX endpoints and HTTP sockets. */
#define FW_DOCTOR_MIN_NOFILE 65536
static void check_nofile(fw_doctor *d) {
    struct rlimit l;
    getrlimit(RLIMIT_NOFILE, &l);
    char soft[32], hard[32];
    limit_text(l.rlim_cur, 1, soft, sizeof soft);
    limit_text(l.rlim_max, 1, hard, sizeof hard);
    if (l.rlim_cur == RLIM_INFINITY || l.rlim_cur >= FW_DOCTOR_MIN_NOFILE)
        fw_doctor_add(d, "open-files", FW_DOCTOR_PASS, NULL, "%s (hard %s)", soft, hard);
    else
        fw_doctor_add(d, "open-files", FW_DOCTOR_WARN,
                      l.rlim_max == RLIM_INFINITY || l.rlim_max >= FW_DOCTOR_MIN_NOFILE
                          ? "ulimit -n 65536 (before starting the ranks)"
                          : "'* - nofile 65536' in /etc/security/limits.conf",
                      "%s (hard %s): under 65536 for sockets, endpoints and checkpoint files", soft, hard);
}

void fw_doctor_check_limits(fw_doctor *d) {
    check_memlock(d);
    check_nofile(d);
}
