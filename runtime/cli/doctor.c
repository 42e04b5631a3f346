/* furrow doctor's results: adding one, and reading a value from /proc or /sys. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cli/doctor.h"

void fw_doctor_add(fw_doctor *d, const char *name, fw_doctor_status s, const char *fix,
                   const char *fmt, ...) {
    if (d->n >= FW_DOCTOR_MAX_RESULTS) return; /* a fixed list of checks: cannot happen */
    fw_doctor_result *r = &d->r[d->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->found, sizeof r->found, fmt, ap);
    va_end(ap);
    snprintf(r->fix, sizeof r->fix, "%s", (s == FW_DOCTOR_WARN || s == FW_DOCTOR_FAIL) && fix ? fix : "");
}

const char *fw_doctor_status_name(fw_doctor_status s) {
    static const char *names[] = {"pass", "warn", "fail", "skip"};
    return names[s];
}

int fw_doctor_read_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *ok = fgets(buf, (int)size, f);
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\n")] = 0;
    return 0;
}
