/* Wall-clock timing for reports and statistics. */
#ifndef FW_IO_BASE_CLOCK_H
#define FW_IO_BASE_CLOCK_H

/* Seconds on a monotonic clock. */
double fw_now(void);

#endif
