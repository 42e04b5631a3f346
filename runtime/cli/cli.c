#include "config.h"

#include "runtime/cli/cli.h"
#include "kernels/cpu/fast.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sched.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int fw_cli_parse_int(const char *text, const char *flag, int64_t min, int64_t max, int64_t *out,
                     fw_err *e) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return fw_errf(e, "%s: '%s' is not an integer", flag, text);
    if (v < min || v > max)
        return fw_errf(e, "%s: %lld is out of range [%lld, %lld]", flag, v, (long long)min,
                       (long long)max);
    *out = v;
    return FW_OK;
}

int fw_cli_parse_double(const char *text, const char *flag, double *out, fw_err *e) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end) return fw_errf(e, "%s: '%s' is not a number", flag, text);
    if (!isfinite(v)) return fw_errf(e, "%s: '%s' is not a finite number", flag, text);
    *out = v;
    return FW_OK;
}

int fw_cli_parse_ids(const char *text, const char *flag, int64_t limit, int32_t **ids,
                     int64_t *n, fw_err *e) {
    int64_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return fw_errf(e, "%s: out of memory", flag);
    int64_t k = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || x < 0 || x > INT32_MAX ||
            (limit > 0 && x >= limit)) {
            free(v);
            if (limit > 0 && x >= limit && end != p)
                return fw_errf(e, "%s: token id %lld is outside the vocabulary [0, %lld)", flag, x,
                               (long long)limit);
            return fw_errf(e, "%s: expected comma-separated token ids, got '%s'", flag, text);
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(v);
        return fw_errf(e, "%s: no token ids given", flag);
    }
    *ids = v;
    *n = k;
    return FW_OK;
}

int fw_cli_parse_kernels(const char *text, const fw_ops **ops, fw_err *e) {
    if (!strcmp(text, "fast")) *ops = fw_ops_cpu_fast();
    else if (!strcmp(text, "ref")) *ops = fw_ops_cpu_ref();
    else if (!strcmp(text, "generic")) *ops = fw_ops_cpu_fast_generic();
    else if (!strcmp(text, "avx2") || !strcmp(text, "avx512")) {
        const bool big = !strcmp(text, "avx512");
        if (big ? !fw_cpu_has_avx512() : !fw_cpu_has_avx2())
            return fw_errf(e, "--kernels %s: this CPU lacks %s", text, big ? "AVX-512 F/BW/VL" : "AVX2/FMA/F16C");
        *ops = big ? fw_ops_cpu_fast_avx512() : fw_ops_cpu_fast_avx2();
    } else {
        return fw_errf(e, "--kernels: expected 'fast', 'avx512', 'avx2', 'generic' or 'ref', got '%s'", text);
    }
    return FW_OK;
}

void fw_cli_engine_defaults(fw_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->ops = fw_ops_cpu_fast();
    o->backend = (fw_backend_opts){.reference = false, .graphs = true, .streams = 2, .collective_timeout = 300};
    o->watchdog = 300;
    o->load = FW_LOAD_MMAP;
#ifdef FW_HAVE_UCX
    o->transport = FW_PP_UCX;
#else
    o->transport = FW_PP_MPI;
#endif
}

int fw_cli_engine_option(int code, const char *arg, fw_engine_opts *o, fw_err *e) {
    int64_t v;
    switch (code) {
    case FW_OPT_TP:
    case FW_OPT_PP:
        if (fw_cli_parse_int(arg, code == FW_OPT_TP ? "--tp" : "--pp", 1, 1 << 20, &v, e)) return -1;
        *(code == FW_OPT_TP ? &o->tp : &o->pp) = (int)v;
        return 1;
    case FW_OPT_PP_TRANSPORT:
        if (!strcmp(arg, "ucx")) o->transport = FW_PP_UCX;
        else if (!strcmp(arg, "mpi")) o->transport = FW_PP_MPI;
        else return fw_errf(e, "--pp-transport: expected ucx or mpi, got '%s'", arg), -1;
        return 1;
    case FW_OPT_KERNELS:
        if (fw_cli_parse_kernels(arg, &o->ops, e)) return -1;
        o->backend.reference = !strcmp(arg, "ref");
        return 1;
    case FW_OPT_CUDA_GRAPHS:
        if (strcmp(arg, "on") && strcmp(arg, "off"))
            return fw_errf(e, "--cuda-graphs: expected on or off, got '%s'", arg), -1;
        o->backend.graphs = !strcmp(arg, "on");
        return 1;
    case FW_OPT_CUDA_STREAMS:
        if (fw_cli_parse_int(arg, "--cuda-streams", 1, 2, &v, e)) return -1;
        o->backend.streams = (int)v;
        return 1;
    case FW_OPT_COLLECTIVE_TIMEOUT: {
        double t;
        if (fw_cli_parse_double(arg, "--collective-timeout", &t, e)) return -1;
        if (!(t > 0)) return fw_errf(e, "--collective-timeout: %s is not a positive number of seconds", arg), -1;
        o->backend.collective_timeout = t;
        return 1;
    }
    case FW_OPT_VERBOSE: o->verbose = true; return 1;
    case FW_OPT_NO_VERIFY: o->no_verify = true; return 1;
    case FW_OPT_SPECULATIVE: return fw_cli_parse_speculative(arg, &o->speculative, e) ? -1 : 1;
    case FW_OPT_INDEXER:
        if (!strcmp(arg, "fp8")) o->index_exact = false;
        else if (!strcmp(arg, "exact")) o->index_exact = true;
        else return fw_errf(e, "--indexer: expected fp8 or exact, got '%s'", arg), -1;
        return 1;
    case FW_OPT_LOAD:
        if (!strcmp(arg, "mmap")) o->load = FW_LOAD_MMAP;
        else if (!strcmp(arg, "read")) o->load = FW_LOAD_READ;
        else return fw_errf(e, "--load: expected mmap or read, got '%s'", arg), -1;
        return 1;
    case FW_OPT_WATCHDOG: {
        double t;
        if (fw_cli_parse_double(arg, "--watchdog", &t, e)) return -1;
        if (!(t >= 0 && t <= 86400)) return fw_errf(e, "--watchdog: %s is not a number of seconds in [0, 86400]", arg), -1;
        o->watchdog = t;
        return 1;
    }
    case FW_OPT_DEVICE:
        if (strcmp(arg, "cpu") && strcmp(arg, "cuda"))
            return fw_errf(e, "--device: '%s' is not one of cpu, cuda", arg), -1;
        o->device = arg;
        return 1;
    default: return 0;
    }
}

int fw_cli_runner_option(int code, const char *arg, fw_sched_opts *o, fw_err *e) {
    if (code == FW_OPT_PREFIX_CACHE) {
        if (strcmp(arg, "on") && strcmp(arg, "off"))
            return fw_errf(e, "--prefix-cache: expected on or off, got '%s'", arg), -1;
        o->prefix_cache = !strcmp(arg, "on");
        return 1;
    }
    static const struct {
        int code;
        const char *flag;
        int64_t max;
    } limits[] = {{FW_OPT_KV_BLOCKS, "--kv-blocks", INT32_MAX},   {FW_OPT_BLOCK_SIZE, "--block-size", INT32_MAX},
                  {FW_OPT_MAX_BATCH, "--max-batch", 4096},         {FW_OPT_TOKEN_BUDGET, "--token-budget", INT32_MAX},
                  {FW_OPT_MAX_CONTEXT, "--max-context", INT32_MAX}};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (limits[i].code != code) continue;
        int64_t v;
        if (fw_cli_parse_int(arg, limits[i].flag, 1, limits[i].max, &v, e)) return -1;
        switch (code) {
        case FW_OPT_KV_BLOCKS: o->n_blocks = v; break;
        case FW_OPT_BLOCK_SIZE: o->block_size = v; break;
        case FW_OPT_MAX_BATCH: o->max_batch = (int)v; break;
        case FW_OPT_TOKEN_BUDGET: o->token_budget = v; break;
        default: o->max_context = v; break;
        }
        return 1;
    }
    return 0;
}

int fw_cli_parse_size(const char *text, const char *flag, uint64_t *out, fw_err *e) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || v < 0) return fw_errf(e, "%s: '%s' is not a size", flag, text);
    double unit = 1;
    const char *u = end;
    int k = toupper((unsigned char)*u);
    if (k) {
        const char *p = strchr("KMGT", k);
        if (!p) return fw_errf(e, "%s: unknown unit in '%s' (use K, M, G, T or KiB, MiB, GiB, TiB)", flag, text);
        int n = (int)(p - "KMGT") + 1;
        u++;
        if ((u[0] == 'i' || u[0] == 'I') && (u[1] == 'B' || u[1] == 'b')) unit = ldexp(1, 10 * n), u += 2;
        else {
            unit = pow(1000, n);
            if (*u == 'B' || *u == 'b') u++;
        }
        if (*u) return fw_errf(e, "%s: unknown unit in '%s' (use K, M, G, T or KiB, MiB, GiB, TiB)", flag, text);
    }
    *out = (uint64_t)(v * unit);
    return FW_OK;
}

int fw_cli_parse_speculative(const char *arg, int *k, fw_err *e) {
    if (strcmp(arg, "mtp:1") && strcmp(arg, "mtp:2"))
        return fw_errf(e, "--speculative: '%s' is not mtp:1 or mtp:2 (draft tokens a step from the MTP layer)", arg);
    *k = arg[4] - '0';
    return FW_OK;
}
