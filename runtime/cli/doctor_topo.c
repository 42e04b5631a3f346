/* furrow doctor: what hwloc sees (the topology inside this process's cpuset)
 * and whether the launcher bound the process, and how. */
#include <hwloc.h>
#include <stdlib.h>

#include "runtime/cli/doctor.h"
#include "runtime/dist/topo.h"

/* The NUMA nodes whose cores intersect `set`. */
static int numa_nodes_of(hwloc_topology_t hw, hwloc_const_bitmap_t set) {
    int n = 0;
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, NULL); o;
         o = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, o))
        if (hwloc_bitmap_intersects(o->cpuset, set)) n++;
    return n;
}

void fw_doctor_check_topo(fw_doctor *d) {
    fw_err e = {{0}};
    fw_topo t;
    if (fw_topo_load(&t, &e)) {
        fw_doctor_add(d, "hwloc-topology", FW_DOCTOR_FAIL,
                      "check that /sys and /proc are mounted and readable (hwloc reads them)", "%s", e.msg);
        fw_doctor_add(d, "cpu-binding", FW_DOCTOR_SKIP, NULL, "no topology");
        return;
    }
    d->n_numa = t.n_numa;
    fw_doctor_add(d, "hwloc-topology", FW_DOCTOR_PASS, NULL,
                  "%d package(s), %d NUMA node(s), %d cores, %d PUs; %d GPU(s), %d NIC(s) on PCI", t.n_packages,
                  t.n_numa, t.n_cores, t.n_pus, t.n_gpus, t.n_nics);

    hwloc_topology_t hw = t.hw;
    hwloc_const_bitmap_t allowed = hwloc_topology_get_allowed_cpuset(hw);
    hwloc_bitmap_t cur = hwloc_bitmap_alloc();
    char *text = NULL;
    if (hwloc_get_cpubind(hw, cur, HWLOC_CPUBIND_PROCESS)) {
        fw_doctor_add(d, "cpu-binding", FW_DOCTOR_SKIP, NULL, "hwloc cannot read this process's binding on this OS");
    } else {
        hwloc_bitmap_and(cur, cur, allowed);
        hwloc_bitmap_list_asprintf(&text, cur);
        int cores = hwloc_get_nbobjs_inside_cpuset_by_type(hw, cur, HWLOC_OBJ_CORE);
        int numas = numa_nodes_of(hw, cur);
        if (hwloc_bitmap_isequal(cur, allowed))
            fw_doctor_add(d, "cpu-binding", FW_DOCTOR_PASS, NULL,
                          "not bound: all %d allowed cores (%s); each rank binds itself to its share", cores, text);
        else if (numas > 1 && t.n_numa > numas)
            /* Bound to part of the machine that still straddles NUMA nodes: the
             * launcher's map does not follow the memory. */
            fw_doctor_add(d, "cpu-binding", FW_DOCTOR_WARN,
                          "bind ranks within a NUMA node: srun --cpu-bind=ldoms, or mpirun --map-by numa --bind-to core",
                          "bound to %d cores (%s) across %d of %d NUMA nodes", cores, text, numas, t.n_numa);
        else
            fw_doctor_add(d, "cpu-binding", FW_DOCTOR_PASS, NULL, "bound to %d cores (%s) on %d NUMA node(s)", cores,
                          text, numas);
    }
    free(text);
    hwloc_bitmap_free(cur);
    fw_topo_free(&t);
}
