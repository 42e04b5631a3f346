/* Keeps libfurrow_partition.a non-empty until the planner lands. */
#include "partition/partition.h"
int fw_partition_placeholder_;
