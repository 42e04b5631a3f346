/* Machine topology (hwloc): packages, NUMA nodes, cores, GPUs and NICs on PCI;
 * binding each rank's threads to its share of cores, NUMA-local to its GPU where
 * there is one, inside the cpuset that mpirun or Slurm gave the process. */
#ifndef FW_RUNTIME_DIST_TOPO_H
#define FW_RUNTIME_DIST_TOPO_H

#include <stdbool.h>

#include "io/base/err.h"

#define FW_TOPO_MAX_PCI 64

typedef struct fw_pci_dev {
    char busid[16];            /* "0000:1b:00.0" */
    char name[64];             /* OS device name (e.g. mlx5_0, ib0) or vendor:device */
    int numa;                  /* NUMA node index, -1 unknown */
    bool gpu, nic;
} fw_pci_dev;

typedef struct fw_topo {
    int n_packages, n_numa, n_cores, n_pus;
    int n_gpus, n_nics;
    fw_pci_dev pci[FW_TOPO_MAX_PCI];
    int n_pci;
    /* This rank's binding, after fw_topo_bind. */
    char cpuset[256];          /* hwloc list syntax, e.g. "0-3,8" */
    int bound_cores;           /* cores in the binding */
    int numa_of_binding;       /* -1 if it spans several */
    int mem_node;              /* NUMA node its memory is bound to, -1 none */
    char mem_note[96];         /* where its memory goes, and why */
    int gpu_index;             /* index into pci[] of this rank's GPU, -1 none */
    bool inherited;            /* the launcher had already bound this process */
    int threads;               /* OpenMP threads to use */
    void *hw;                  /* hwloc_topology_t */
} fw_topo;

int fw_topo_load(fw_topo *t, fw_err *e);
/* Binds this process (its threads) to a share of the allowed cores: when the
 * launcher bound it to a subset, that subset; otherwise the node's cores split
 * evenly among local_size ranks (one core per rank when oversubscribed). Where
 * the machine has several NUMA nodes and the cores lie in one, its memory is
 * bound to that node too (mem_node, mem_note). Sets OpenMP's thread count to
 * the cores bound, unless OMP_NUM_THREADS is set. */
int fw_topo_bind(fw_topo *t, int local_rank, int local_size, fw_err *e);
void fw_topo_free(fw_topo *t);

#endif
