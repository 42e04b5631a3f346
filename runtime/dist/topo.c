#include "runtime/dist/topo.h"

#include <errno.h>
#include <hwloc.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void scan_pci(fw_topo *t, hwloc_topology_t hw) {
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_pcidev(hw, o)) && t->n_pci < FW_TOPO_MAX_PCI) {
        unsigned cls = o->attr->pcidev.class_id >> 8;        /* base class */
        bool gpu = (o->attr->pcidev.vendor_id == 0x10de || o->attr->pcidev.vendor_id == 0x1002) &&
                   (cls == 0x03);                             /* display controller */
        bool nic = cls == 0x02 || o->attr->pcidev.class_id == 0x0c06; /* network, InfiniBand */
        if (!gpu && !nic) continue;
        fw_pci_dev *d = &t->pci[t->n_pci++];
        snprintf(d->busid, sizeof d->busid, "%04x:%02x:%02x.%01x", o->attr->pcidev.domain,
                 o->attr->pcidev.bus, o->attr->pcidev.dev, o->attr->pcidev.func);
        snprintf(d->name, sizeof d->name, "%04x:%04x", o->attr->pcidev.vendor_id, o->attr->pcidev.device_id);
        for (hwloc_obj_t c = o->io_first_child; c; c = c->next_sibling)
            if (c->type == HWLOC_OBJ_OS_DEVICE && c->name) {
                snprintf(d->name, sizeof d->name, "%s", c->name);
                break;
            }
        hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(hw, o);
        d->numa = -1;
        if (anc && anc->nodeset) {
            int first = hwloc_bitmap_first(anc->nodeset);
            if (first >= 0 && hwloc_bitmap_weight(anc->nodeset) == 1) d->numa = first;
        }
        d->gpu = gpu;
        d->nic = nic;
        t->n_gpus += gpu;
        t->n_nics += nic;
    }
}

int fw_topo_load(fw_topo *t, fw_err *e) {
    memset(t, 0, sizeof *t);
    t->gpu_index = -1;
    t->numa_of_binding = -1;
    t->mem_node = -1;
    hwloc_topology_t hw;
    if (hwloc_topology_init(&hw)) return fw_errf(e, "hwloc: topology init failed");
    hwloc_topology_set_io_types_filter(hw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(hw)) {
        hwloc_topology_destroy(hw);
        return fw_errf(e, "hwloc: cannot load the machine topology");
    }
    t->hw = hw;
    t->n_packages = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PACKAGE);
    t->n_numa = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_NUMANODE);
    t->n_cores = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_CORE);
    t->n_pus = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PU);
    scan_pci(t, hw);
    return FW_OK;
}

/* The cores (as a cpuset of their PUs) that rank `i` of `n` gets out of `allowed`:
 * a contiguous run of cores, so a rank stays inside a package / NUMA node when
 * the ranks divide them evenly. */
static hwloc_bitmap_t share_of(hwloc_topology_t hw, hwloc_const_bitmap_t allowed, int i, int n) {
    int ncores = hwloc_get_nbobjs_inside_cpuset_by_type(hw, allowed, HWLOC_OBJ_CORE);
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (ncores <= 0) {
        hwloc_bitmap_copy(set, allowed);
        return set;
    }
    int first, count;
    if (n <= ncores) {
        first = (int)((long)i * ncores / n);
        count = (int)((long)(i + 1) * ncores / n) - first;
    } else { /* oversubscribed: round-robin one core each */
        first = i % ncores;
        count = 1;
    }
    for (int c = first; c < first + count; c++) {
        hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(hw, allowed, HWLOC_OBJ_CORE, (unsigned)c);
        if (core) hwloc_bitmap_or(set, set, core->cpuset);
    }
    return set;
}

/* The GPU (index into pci[]) of node-local rank r: the r-th in bus order,
 * round-robin when there are more ranks than GPUs; -1 without GPUs. */
static int gpu_of(const fw_topo *t, int r) {
    if (t->n_gpus == 0) return -1;
    for (int i = 0, g = 0; i < t->n_pci; i++)
        if (t->pci[i].gpu && g++ == r % t->n_gpus) return i;
    return -1;
}

/* With several NUMA nodes, a rank whose cores lie in one keeps its memory there:
 * the weights it reads, its caches, and page-cache pages it faults in from disk
 * (pages already cached elsewhere stay where they are). Bound before the OpenMP
 * threads start, so they inherit the policy (Linux keeps one per thread). A
 * refusal (a container without the right) leaves the kernel's default, first
 * touch, and says so. */
static void bind_memory(fw_topo *t, hwloc_topology_t hw) {
    t->mem_node = -1;
    if (t->n_numa < 2) {
        snprintf(t->mem_note, sizeof t->mem_note, "not bound (one NUMA node)");
        return;
    }
    if (t->numa_of_binding < 0) {
        snprintf(t->mem_note, sizeof t->mem_note, "first touch (its cores span NUMA nodes)");
        return;
    }
    hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(hw, (unsigned)t->numa_of_binding);
    if (!node || hwloc_set_membind(hw, node->nodeset, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_BYNODESET)) {
        snprintf(t->mem_note, sizeof t->mem_note, "first touch (binding to NUMA node %d failed: %s)",
                 t->numa_of_binding, node ? strerror(errno) : "no such node");
        return;
    }
    t->mem_node = t->numa_of_binding;
    snprintf(t->mem_note, sizeof t->mem_note, "bound to NUMA node %d", t->mem_node);
}

int fw_topo_bind(fw_topo *t, int local_rank, int local_size, fw_err *e) {
    hwloc_topology_t hw = t->hw;
    hwloc_const_bitmap_t allowed = hwloc_topology_get_allowed_cpuset(hw);
    hwloc_bitmap_t current = hwloc_bitmap_alloc();
    if (hwloc_get_cpubind(hw, current, HWLOC_CPUBIND_PROCESS)) hwloc_bitmap_copy(current, allowed);
    hwloc_bitmap_and(current, current, allowed);

    /* A launcher that bound us to less than the whole machine knows better; a
     * binding to everything (or to a whole package shared by several of our
     * ranks, as mpirun does with many ranks per socket) gets split. */
    hwloc_bitmap_t set;
    int shared_cores = hwloc_get_nbobjs_inside_cpuset_by_type(hw, current, HWLOC_OBJ_CORE);
    t->inherited = !hwloc_bitmap_isequal(current, allowed) && shared_cores * local_size <= t->n_cores;
    t->gpu_index = gpu_of(t, local_rank);
    int gpu_numa = t->gpu_index >= 0 ? t->pci[t->gpu_index].numa : -1;

    if (t->inherited) {
        set = hwloc_bitmap_dup(current);
    } else if (gpu_numa >= 0) {
        /* NUMA-local to the GPU: the cores of its NUMA node, shared by the local
         * ranks whose GPUs hang off the same node. */
        hwloc_obj_t numa = hwloc_get_numanode_obj_by_os_index(hw, (unsigned)gpu_numa);
        hwloc_bitmap_t near = hwloc_bitmap_alloc();
        hwloc_bitmap_and(near, current, numa ? numa->cpuset : current);
        int idx = 0, n_same = 0;
        for (int r = 0; r < local_size; r++) {
            int gi = gpu_of(t, r);
            if (gi >= 0 && t->pci[gi].numa == gpu_numa) {
                if (r < local_rank) idx++;
                n_same++;
            }
        }
        set = share_of(hw, hwloc_bitmap_iszero(near) ? current : near, idx, n_same ? n_same : 1);
        hwloc_bitmap_free(near);
    } else {
        set = share_of(hw, current, local_rank, local_size);
    }
    if (!t->inherited) {
        if (hwloc_set_cpubind(hw, set, HWLOC_CPUBIND_PROCESS)) {
            char buf[256];
            hwloc_bitmap_list_snprintf(buf, sizeof buf, set);
            hwloc_bitmap_free(set);
            hwloc_bitmap_free(current);
            return fw_errf(e, "hwloc: cannot bind to cores %s", buf);
        }
    }
    hwloc_bitmap_list_snprintf(t->cpuset, sizeof t->cpuset, set);
    t->bound_cores = hwloc_get_nbobjs_inside_cpuset_by_type(hw, set, HWLOC_OBJ_CORE);
    if (t->bound_cores < 1) t->bound_cores = 1;
    hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
    hwloc_cpuset_to_nodeset(hw, set, nodes);
    if (hwloc_bitmap_weight(nodes) == 1) t->numa_of_binding = hwloc_bitmap_first(nodes);
    hwloc_bitmap_free(nodes);

    bind_memory(t, hw);

    t->threads = t->bound_cores;
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(t->threads);
    else t->threads = omp_get_max_threads();
    hwloc_bitmap_free(set);
    hwloc_bitmap_free(current);
    return FW_OK;
}

void fw_topo_free(fw_topo *t) {
    if (t->hw) hwloc_topology_destroy((hwloc_topology_t)t->hw);
    t->hw = NULL;
}
