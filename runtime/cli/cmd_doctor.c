/* furrow doctor: node pre-flight checks (runtime/cli/doctor.h), printed one
 * line each or as one JSON object for a Slurm prolog. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/doctor.h"

/* Exit status when a check failed; warnings leave it 0. */
#define FW_DOCTOR_EXIT_FAIL 1

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow doctor [--json] [--checkpoint PATH [--read-limit BYTES] [--min-read-speed GB/S]]\n\n"
            "Checks this node before a job: hwloc topology and the process's binding, NUMA\n"
            "balancing, transparent hugepages, swappiness, socket buffer sysctls, the CPU\n"
            "governor, memlock and open-file limits, the checkpoint's read speed, Open MPI's\n"
            "and UCX's transports (ompi_info, ucx_info -d from PATH), InfiniBand ports\n"
            "(/sys/class/infiniband) and the GPUs through NVML (libnvidia-ml.so.1 of the\n"
            "driver: persistence mode, uncorrected ECC errors, clocks, temperature, NVLink\n"
            "state, PCIe width). Each check prints one line: its name, pass, warn, fail or\n"
            "skip, what it found, and for warn and fail the fix. A check that cannot run here\n"
            "(no GPU, no InfiniBand, a tool not in PATH) is skipped and says why.\n\n"
            "What passes: NUMA balancing off (on a node of several NUMA nodes), THP always\n"
            "(furrow does not madvise its weights), vm.swappiness 10 or less, rmem_max and\n"
            "wmem_max 16 MiB or more, the performance governor, memlock unlimited (else a\n"
            "warning, a failure where there are InfiniBand ports), 65536 open files, pml ucx\n"
            "and a UCX verbs transport where there are InfiniBand ports, every port ACTIVE,\n"
            "GPUs in persistence mode, with ECC on and no uncorrected errors, no thermal or\n"
            "power slowdown, 10 C or more below the slowdown temperature, every NVLink up\n"
            "and PCIe at its full width.\n\n"
            "The checkpoint's files are read with O_DIRECT so the page cache cannot inflate\n"
            "the speed; where the file system refuses O_DIRECT they are read through the\n"
            "cache after dropping each file's cached pages (posix_fadvise), and the line\n"
            "says so. Below --min-read-speed the check warns: at 1 GB/s a node loading half\n"
            "of DeepSeek-V3's FP8 weights (~345 GB, 2 nodes) waits about 6 minutes.\n\n"
            "options:\n"
            "  --json                    one JSON object: {\"host\", \"furrow\", \"status\" (the\n"
            "                            worst of pass, warn, fail), \"counts\" {pass, warn, fail,\n"
            "                            skip}, \"checks\": [{\"name\", \"status\", \"found\",\n"
            "                            \"fix\" (null for pass and skip)}]}\n"
            "  --checkpoint PATH         measure the read speed of a checkpoint folder (its files)\n"
            "                            or of one file (default: the check is skipped)\n"
            "  --read-limit BYTES        read at most this much of it (default 4G: G = 10^9,\n"
            "                            GiB = 2^30 bytes)\n"
            "  --min-read-speed GB/S     warn below this read speed (default 1.0)\n"
            "  -h, --help                this help\n\n"
            "exit status: 0 when no check failed (warnings included), %d when a check failed,\n"
            "2 on a bad option.\n",
            FW_DOCTOR_EXIT_FAIL);
}

static void print_lines(const fw_doctor *d) {
    for (int i = 0; i < d->n; i++) {
        const fw_doctor_result *r = &d->r[i];
        printf("%-22s %-4s  %s\n", r->name, fw_doctor_status_name(r->status), r->found);
        if (r->fix[0]) printf("%-22s       fix: %s\n", "", r->fix);
    }
}

/* A JSON string of text that may not be UTF-8 (a path's bytes in "found"):
 * bytes outside ASCII become '?' when jansson refuses it. */
static json_t *json_text(const char *text) {
    json_t *j = json_string(text);
    if (j) return j;
    char safe[sizeof ((fw_doctor_result *)0)->found];
    size_t i = 0;
    for (; text[i] && i < sizeof safe - 1; i++) safe[i] = (unsigned char)text[i] < 0x80 ? text[i] : '?';
    safe[i] = 0;
    return json_string(safe);
}

static int print_json(const fw_doctor *d, fw_doctor_status worst, const int counts[4]) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    json_t *checks = json_array();
    for (int i = 0; i < d->n; i++) {
        const fw_doctor_result *r = &d->r[i];
        json_array_append_new(checks, json_pack("{s:s, s:s, s:o, s:o}", "name", r->name, "status",
                                                fw_doctor_status_name(r->status), "found", json_text(r->found),
                                                "fix", r->fix[0] ? json_text(r->fix) : json_null()));
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:{s:i, s:i, s:i, s:i}, s:o}", "host", host, "furrow", PACKAGE_VERSION,
                             "status", fw_doctor_status_name(worst), "counts", "pass", counts[FW_DOCTOR_PASS], "warn",
                             counts[FW_DOCTOR_WARN], "fail", counts[FW_DOCTOR_FAIL], "skip", counts[FW_DOCTOR_SKIP],
                             "checks", checks);
    if (!root) return -1;
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    printf("\n");
    json_decref(root);
    return rc;
}

enum { OPT_JSON = 1, OPT_CHECKPOINT, OPT_READ_LIMIT, OPT_MIN_READ };

int fw_cmd_doctor(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                         {"json", no_argument, 0, OPT_JSON},
                                         {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
                                         {"read-limit", required_argument, 0, OPT_READ_LIMIT},
                                         {"min-read-speed", required_argument, 0, OPT_MIN_READ},
                                         {0, 0, 0, 0}};
    int c, json = 0;
    const char *checkpoint = NULL;
    uint64_t read_limit = 4000000000ULL;
    double min_gbs = 1.0;
    fw_err e = {{0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return 0;
        case OPT_JSON: json = 1; break;
        case OPT_CHECKPOINT: checkpoint = optarg; break;
        case OPT_READ_LIMIT: bad = fw_cli_parse_size(optarg, "--read-limit", &read_limit, &e) || read_limit == 0; break;
        case OPT_MIN_READ: bad = fw_cli_parse_double(optarg, "--min-read-speed", &min_gbs, &e) || min_gbs < 0; break;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "furrow doctor: %s\n", e.msg[0] ? e.msg : "a value must be positive");
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    static fw_doctor d; /* ~64 KB of results: off the stack */
    memset(&d, 0, sizeof d);
    d.n_ib_ports = fw_doctor_ib_ports();
    fw_doctor_check_topo(&d);
    fw_doctor_check_kernel(&d);
    fw_doctor_check_limits(&d);
    fw_doctor_check_checkpoint(&d, checkpoint, (int64_t)read_limit, min_gbs);
    fw_doctor_check_transports(&d);
    fw_doctor_check_ib(&d);
    fw_doctor_check_gpus(&d);

    int counts[4] = {0};
    fw_doctor_status worst = FW_DOCTOR_PASS;
    for (int i = 0; i < d.n; i++) {
        counts[d.r[i].status]++;
        if (d.r[i].status != FW_DOCTOR_SKIP && d.r[i].status > worst) worst = d.r[i].status;
    }
    if (json) {
        if (print_json(&d, worst, counts)) {
            fprintf(stderr, "furrow doctor: cannot write the JSON report\n");
            return FW_DOCTOR_EXIT_FAIL;
        }
    } else {
        print_lines(&d);
        printf("\n%d pass, %d warn, %d fail, %d skip\n", counts[FW_DOCTOR_PASS], counts[FW_DOCTOR_WARN],
               counts[FW_DOCTOR_FAIL], counts[FW_DOCTOR_SKIP]);
    }
    return worst == FW_DOCTOR_FAIL ? FW_DOCTOR_EXIT_FAIL : 0;
}
