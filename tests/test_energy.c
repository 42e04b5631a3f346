/* The energy meter (runtime/dist/energy.h) over fake powercap folders: the
 * wraparound arithmetic; zones found and named (subzones after their package,
 * other powercap types skipped), progress summed per zone and over the CPU
 * packages only, across a wrap at max_energy_range_uj and over several
 * samples; a zone whose counter cannot be read, and a missing folder, leave a
 * reason and no domain. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/dist/energy.h"
#include "tests/check.h"

static char root[400];

static void put(const char *zone, const char *file, const char *text) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", root, zone);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", root, zone, file);
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", p, strerror(errno));
        exit(1);
    }
    fprintf(f, "%s\n", text);
    fclose(f);
}

static void zone(const char *dir, const char *name, unsigned long long uj, unsigned long long range) {
    char b[32];
    put(dir, "name", name);
    snprintf(b, sizeof b, "%llu", uj);
    put(dir, "energy_uj", b);
    snprintf(b, sizeof b, "%llu", range);
    put(dir, "max_energy_range_uj", b);
}

static const fw_energy_domain *find(const fw_energy *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->d[i].name, name)) return &m->d[i];
    return NULL;
}

static bool near(double a, double b) { return fabs(a - b) < 1e-9; }

static void check_delta(void) {
    CHECK(fw_energy_delta(100, 350, 1000) == 250, "plain progress");
    CHECK(fw_energy_delta(350, 350, 1000) == 0, "no progress");
    CHECK(fw_energy_delta(900, 100, 1000) == 200, "one wrap at range 1000: %llu",
          (unsigned long long)fw_energy_delta(900, 100, 1000));
    CHECK(fw_energy_delta(1000, 0, 1000) == 0, "from the top of the range to 0");
    const uint64_t big = 262143328850ull; /* a common package range */
    CHECK(fw_energy_delta(big - 5, 7, big) == 12, "wrap of a real-size range");
    CHECK(fw_energy_delta(500, 100, 0) == 0, "no range: a drop is a reset, not progress");
    CHECK(fw_energy_delta(2000, 100, 1000) == 0, "a reading above the range: not a wrap");
    CHECK(fw_energy_delta(0, UINT64_MAX, 0) == UINT64_MAX, "64-bit progress");
}

static void check_zones(void) {
    zone("intel-rapl:0", "package-0", 1000, 262143328850ull);
    zone("intel-rapl:0:0", "core", 500, 262143328850ull);
    zone("intel-rapl:0:1", "dram", 40, 65712999613ull);
    zone("intel-rapl:1", "package-1", 900000, 1000000);
    zone("intel-rapl-mmio:0", "package-0", 5, 1000); /* the same package through MMIO: not counted twice */
    put("intel-rapl", "enabled", "1");                /* the control type itself */
    fw_energy m;
    fw_energy_open_at(&m, root, false);
    CHECK(m.n == 4, "4 RAPL zones, found %d", m.n);
    CHECK(!m.rapl_why[0], "no reason with zones found: %s", m.rapl_why);
    CHECK(m.nvml_why[0], "NVML not asked: says so");
    const fw_energy_domain *p0 = find(&m, "package-0"), *core = find(&m, "package-0/core"),
                           *dram = find(&m, "package-0/dram"), *p1 = find(&m, "package-1");
    CHECK(p0 && core && dram && p1, "zones named by package");
    CHECK(p0 && p0->package && p1 && p1->package && core && !core->package && dram && !dram->package,
          "only top-level package zones are packages");
    double cpu, gpu;
    fw_energy_totals(&m, &cpu, &gpu);
    CHECK(near(cpu, 0) && gpu == -1, "nothing moved: cpu %g J, gpu %g (-1: none)", cpu, gpu);

    /* package-0 +2.999 J, package-1 wraps (900000 -> 200000 over 1000000: +0.3 J), dram +1 J. */
    zone("intel-rapl:0", "package-0", 3000000, 262143328850ull);
    zone("intel-rapl:1", "package-1", 200000, 1000000);
    zone("intel-rapl:0:1", "dram", 1000040, 65712999613ull);
    fw_energy_sample(&m);
    CHECK(p0 && near(p0->joules, 2.999), "package-0 %.9g J", p0 ? p0->joules : -1);
    CHECK(p1 && near(p1->joules, 0.3), "package-1 across the wrap: %.9g J", p1 ? p1->joules : -1);
    CHECK(dram && near(dram->joules, 1.0), "dram %.9g J", dram ? dram->joules : -1);
    CHECK(core && near(core->joules, 0), "core unchanged");
    /* A second wrap of package-1 after another sample: totals keep adding. */
    zone("intel-rapl:1", "package-1", 999999, 1000000);
    fw_energy_sample(&m);
    zone("intel-rapl:1", "package-1", 1, 1000000);
    fw_energy_totals(&m, &cpu, &gpu);
    CHECK(p1 && near(p1->joules, 0.3 + 0.799999 + 0.000002), "package-1 over two wraps: %.9g J", p1 ? p1->joules : -1);
    CHECK(near(cpu, 2.999 + 0.3 + 0.799999 + 0.000002), "cpu = the packages only: %.9g J", cpu);
    /* A counter that vanished between samples is skipped, not taken as 0. */
    char gone[700];
    snprintf(gone, sizeof gone, "%s/intel-rapl:0/energy_uj", root);
    unlink(gone);
    fw_energy_sample(&m);
    zone("intel-rapl:0", "package-0", 4000000, 262143328850ull);
    fw_energy_sample(&m);
    CHECK(p0 && near(p0->joules, 3.999), "package-0 after a missed reading: %.9g J", p0 ? p0->joules : -1);
    CHECK(fw_energy_start(&m, 0.01), "the sampler starts");
    usleep(30000);
    fw_energy_close(&m);
}

static void check_unreadable(void) {
    char unread[420];
    snprintf(unread, sizeof unread, "%.300s/unreadable", root);
    mkdir(unread, 0755);
    char saved[400];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "%.390s", unread);
    put("intel-rapl:0", "name", "package-0");
    char p[700];
    snprintf(p, sizeof p, "%s/intel-rapl:0/energy_uj", root);
    mkdir(p, 0755); /* opens, but reads fail: as a root-only counter does for its user */
    fw_energy m;
    fw_energy_open_at(&m, root, false);
    CHECK(m.n == 0, "an unreadable zone is no domain");
    CHECK(strstr(m.rapl_why, "unreadable"), "the reason says unreadable: '%s'", m.rapl_why);
    double cpu, gpu;
    fw_energy_totals(&m, &cpu, &gpu);
    CHECK(cpu == -1 && gpu == -1, "no figures");
    fw_energy_close(&m);

    snprintf(root, sizeof root, "%.300s/absent", saved);
    fw_energy_open_at(&m, root, false);
    CHECK(m.n == 0 && strstr(m.rapl_why, "no RAPL"), "a missing folder: '%s'", m.rapl_why);
    fw_energy_close(&m);
    snprintf(root, sizeof root, "%s", saved);
}

int main(void) {
    const char *tmp = getenv("FURROW_TMP");
    snprintf(root, sizeof root, "%s/powercap", tmp && *tmp ? tmp : ".");
    mkdir(root, 0755);
    check_delta();
    check_zones();
    check_unreadable();
    return check_result();
}
