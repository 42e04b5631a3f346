/* furrow topo: what hwloc finds on each node (packages, NUMA nodes, cores, GPUs,
 * NICs) and the cores each rank binds to, gathered and printed by rank 0. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "runtime/dist/topo.h"
#include "runtime/dist/world.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow topo\n\n"
            "Prints each node's topology as hwloc sees it (inside the cpuset the launcher\n"
            "gave) and, for every rank, its node-local rank, the cores it binds to, their\n"
            "NUMA node, its GPU (by PCI bus id), its OpenMP threads and where its memory\n"
            "goes. A rank that the launcher bound (mpirun --bind-to, srun --cpu-bind)\n"
            "keeps that binding; an unbound rank takes an even share of its node's cores.\n"
            "On a machine with several NUMA nodes, a rank whose cores lie in one binds\n"
            "its memory to that node too.\n\n"
            "options:\n"
            "  -h, --help   this help\n");
}

/* One rank's line, fixed size so MPI_Gather can collect it. */
typedef struct rank_line {
    char text[512];
} rank_line;

int fw_cmd_topo(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    fw_err e = {{0}};
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow topo: %s\n", e.msg);
        return 1;
    }
    fw_topo t;
    int rc = fw_topo_load(&t, &e) || fw_topo_bind(&t, w.local_rank, w.local_size, &e);
    if (!fw_world_all_ok(&w, rc == 0)) {
        if (rc) fw_world_report(&w, "topo", e.msg);
        fw_topo_free(&t);
        fw_world_finalize(&w);
        return 1;
    }
    rank_line mine, *all = w.rank == 0 ? calloc((size_t)w.size, sizeof *all) : NULL;
    int n = snprintf(mine.text, sizeof mine.text, "%4d  %-16s %5d  %-12s %5s  %4d  ", w.rank, w.host,
                     w.local_rank, t.cpuset, t.inherited ? "yes" : "no", t.numa_of_binding);
    snprintf(mine.text + n, sizeof mine.text - (size_t)n, "%-13s %7d  %s", t.gpu_index >= 0 ? t.pci[t.gpu_index].busid : "-",
             t.threads, t.mem_note);

    /* The node summary, once per node, from its local rank 0. */
    rank_line node = {{0}};
    if (w.local_rank == 0) {
        int k = snprintf(node.text, sizeof node.text, "node %s: %d package(s), %d NUMA node(s), %d cores, %d PUs; %d GPU(s), %d NIC(s)",
                         w.host, t.n_packages, t.n_numa, t.n_cores, t.n_pus, t.n_gpus, t.n_nics);
        for (int i = 0; i < t.n_pci && k < (int)sizeof node.text - 48; i++)
            k += snprintf(node.text + k, sizeof node.text - (size_t)k, "\n  %s %-13s %-12s NUMA %d", t.pci[i].gpu ? "GPU" : "NIC",
                          t.pci[i].busid, t.pci[i].name, t.pci[i].numa);
    }
    rank_line *nodes = w.rank == 0 ? calloc((size_t)w.size, sizeof *nodes) : NULL;
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, w.comm);
    MPI_Gather(&node, sizeof node, MPI_BYTE, nodes, sizeof node, MPI_BYTE, 0, w.comm);
    if (w.rank == 0) {
        for (int r = 0; r < w.size; r++)
            if (nodes[r].text[0]) printf("%s\n", nodes[r].text);
        printf("\nrank  host             local  cores        bound  NUMA  GPU           threads  memory\n");
        for (int r = 0; r < w.size; r++) printf("%s\n", all[r].text);
    }
    free(all);
    free(nodes);
    fw_topo_free(&t);
    fw_world_finalize(&w);
    return 0;
}
