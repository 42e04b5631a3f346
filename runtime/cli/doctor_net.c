/* furrow doctor: the InfiniBand ports (/sys/class/infiniband) and the
 * transports that MPI and UCX offer (ompi_info, ucx_info from PATH). */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/cli/doctor.h"

int fw_doctor_ib_ports(void) {
    DIR *devs = opendir("/sys/class/infiniband");
    int n = 0;
    struct dirent *dev;
    while (devs && (dev = readdir(devs))) {
        char path[512];
        snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports", dev->d_name);
        DIR *ports = dev->d_name[0] == '.' ? NULL : opendir(path);
        struct dirent *p;
        while (ports && (p = readdir(ports))) n += p->d_name[0] != '.';
        if (ports) closedir(ports);
    }
    if (devs) closedir(devs);
    return n;
}

void fw_doctor_check_ib(fw_doctor *d) {
    DIR *devs = opendir("/sys/class/infiniband");
    char found[480] = "";
    int n = 0, down = 0, k = 0;
    struct dirent *dev;
    while (devs && (dev = readdir(devs))) {
        if (dev->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports", dev->d_name);
        DIR *ports = opendir(path);
        struct dirent *p;
        while (ports && (p = readdir(ports))) {
            if (p->d_name[0] == '.') continue;
            char state[64] = "?", rate[64] = "?", layer[64] = "?", f[1024];
            snprintf(f, sizeof f, "%s/%s/state", path, p->d_name);
            fw_doctor_read_line(f, state, sizeof state);
            snprintf(f, sizeof f, "%s/%s/rate", path, p->d_name);
            fw_doctor_read_line(f, rate, sizeof rate);
            snprintf(f, sizeof f, "%s/%s/link_layer", path, p->d_name);
            fw_doctor_read_line(f, layer, sizeof layer);
            n++;
            if (!strstr(state, "ACTIVE")) down++;
            /* "4: ACTIVE" -> "ACTIVE" */
            const char *s = strchr(state, ':') ? strchr(state, ':') + 2 : state;
            if (k < (int)sizeof found - 80)
                k += snprintf(found + k, sizeof found - (size_t)k, "%s%s/%s %s %s %s", n > 1 ? "; " : "", dev->d_name,
                              p->d_name, s, rate, layer);
        }
        if (ports) closedir(ports);
    }
    if (devs) closedir(devs);
    if (n == 0)
        fw_doctor_add(d, "infiniband", FW_DOCTOR_SKIP, NULL, "no InfiniBand/RDMA devices in /sys/class/infiniband");
    else if (down == 0) fw_doctor_add(d, "infiniband", FW_DOCTOR_PASS, NULL, "%s", found);
    else
        fw_doctor_add(d, "infiniband", FW_DOCTOR_WARN,
                      "check the cable and that a subnet manager runs (ibstat; systemctl status opensm)",
                      "%d of %d port(s) not ACTIVE: %s", down, n, found);
}

/* The full path of `name` in PATH, or 0 if it is not there. */
static int in_path(const char *name, char *out, size_t size) {
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        snprintf(out, size, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(out, X_OK) == 0) return 1;
        path += len + (path[len] == ':');
    }
    return 0;
}

static bool has_word(const char *list, const char *word) {
    char spaced[1024], padded[80];
    snprintf(spaced, sizeof spaced, " %s ", list);
    snprintf(padded, sizeof padded, " %s ", word);
    return strstr(spaced, padded) != NULL;
}

/* Appends to `list` the word after `prefix` in each line of `cmd`'s output
 * (once each); the lines that start with `first` (after spaces) go to
 * `first_line`. Returns the command's exit status, -1 if it did not run. */
static int scan_output(const char *cmd, const char *prefix, char *list, size_t size, const char *first,
                       char *first_line, size_t first_size) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    size_t k = strlen(list);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *s = line + strspn(line, " \t#");
        if (first && first_line && !strncmp(s, first, strlen(first))) snprintf(first_line, first_size, "%s", s);
        if (strncmp(s, prefix, strlen(prefix))) continue;
        char word[64];
        if (sscanf(s + strlen(prefix), " %63[^ (,]", word) != 1) continue;
        if (has_word(list, word) || k + strlen(word) + 2 >= size) continue;
        k += (size_t)snprintf(list + k, size - k, "%s%s", k ? " " : "", word);
    }
    int st = pclose(f);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Open MPI's point-to-point layers: with InfiniBand ports, pml ucx carries
 * MPI over RDMA; without it, MPI falls back to TCP. */
static void check_mpi(fw_doctor *d) {
    char exe[1024];
    if (!in_path("ompi_info", exe, sizeof exe)) {
        fw_doctor_add(d, "mpi", FW_DOCTOR_SKIP, NULL,
                      "no ompi_info in PATH (not Open MPI, or its module is not loaded)");
        return;
    }
    char cmd[1100], pml[256] = "", btl[256] = "", version[128] = "";
    snprintf(cmd, sizeof cmd, "'%s' 2>/dev/null", exe);
    int rc = scan_output(cmd, "MCA pml:", pml, sizeof pml, "Open MPI:", version, sizeof version);
    scan_output(cmd, "MCA btl:", btl, sizeof btl, NULL, NULL, 0);
    if (rc != 0 || !pml[0]) {
        fw_doctor_add(d, "mpi", FW_DOCTOR_FAIL, "check the Open MPI installation (run ompi_info)",
                      "%s did not list its components (exit %d)", exe, rc);
        return;
    }
    if (d->n_ib_ports > 0 && !has_word(pml, "ucx"))
        fw_doctor_add(d, "mpi", FW_DOCTOR_WARN, "use an Open MPI built with UCX (./configure --with-ucx)",
                      "%s; pml: %s; btl: %s; InfiniBand here but no pml ucx: MPI over TCP", version, pml, btl);
    else fw_doctor_add(d, "mpi", FW_DOCTOR_PASS, NULL, "%s; pml: %s; btl: %s", version, pml, btl);
}

/* UCX's transports: furrow's pipeline transfers (--pp-transport ucx) go over
 * them; on an InfiniBand node they should include a verbs one (rc, dc, ud). */
static void check_ucx(fw_doctor *d) {
    char exe[1024];
    if (!in_path("ucx_info", exe, sizeof exe)) {
        fw_doctor_add(d, "ucx", FW_DOCTOR_SKIP, NULL, "no ucx_info in PATH (UCX's tools not installed or loaded)");
        return;
    }
    char cmd[1100], tls[512] = "";
    snprintf(cmd, sizeof cmd, "'%s' -d 2>/dev/null", exe);
    int rc = scan_output(cmd, "Transport:", tls, sizeof tls, NULL, NULL, 0);
    if (rc != 0 || !tls[0]) {
        fw_doctor_add(d, "ucx", FW_DOCTOR_FAIL, "check the UCX installation (run ucx_info -d)",
                      "%s -d listed no transports (exit %d)", exe, rc);
        return;
    }
    bool rdma = strstr(tls, "rc_") || strstr(tls, "dc_") || strstr(tls, "ud_");
    if (d->n_ib_ports > 0 && !rdma)
        fw_doctor_add(d, "ucx", FW_DOCTOR_WARN, "install UCX's verbs transports (rdma-core, ucx built with --with-verbs)",
                      "transports: %s; InfiniBand here but no rc/dc/ud transport", tls);
    else fw_doctor_add(d, "ucx", FW_DOCTOR_PASS, NULL, "transports: %s", tls);
}

void fw_doctor_check_transports(fw_doctor *d) {
    check_mpi(d);
    check_ucx(d);
}
