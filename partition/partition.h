/* Who holds what: layouts, stage placement and per-tensor slicing (the
 * distributed issue fills this library; one rank holds everything until then). */
#ifndef FW_PARTITION_H
#define FW_PARTITION_H
#endif
