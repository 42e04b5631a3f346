/* The performance model (partition/perf.h): the weighted least-squares fit
 * recovers alpha and beta from noisy points, the collective coefficients are
 * NCCL's (ring bus traffic, tree or ring latency), "furrow-links" and
 * "furrow-compute" files are read and their faults named, and a predicted step
 * adds up the layers, the all-reduces and the pipeline hops as the engine runs
 * them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/synth.h"
#include "partition/perf.h"
#include "partition/plan.h"
#include "tests/check.h"

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

static void test_fit(void) {
    /* t = 20 us + bytes / 1 GB/s, +-3% noise, 16 B to 4 MB. */
    double x[10], t[10];
    for (int i = 0; i < 10; i++) {
        x[i] = 16.0 * pow(4, i);
        t[i] = (20e-6 + x[i] * 1e-9) * (1 + 0.03 * ((i % 3) - 1));
    }
    double a, b;
    fw_err e = {{0}};
    CHECK(fw_perf_fit(x, t, 10, &a, &b, &e) == FW_OK, "%s", e.msg);
    CHECK(near(a, 20e-6, 0.05), "alpha %g, want 20e-6", a);
    CHECK(near(b, 1e-9, 0.05), "beta %g, want 1e-9", b);
    double one[2] = {64, 64}, tt[2] = {1e-5, 2e-5};
    CHECK(fw_perf_fit(one, tt, 2, &a, &b, &e) != FW_OK && strstr(e.msg, "distinct"), "one size: %s", e.msg);
    double bad[2] = {1e-5, 0};
    CHECK(fw_perf_fit(x, bad, 2, &a, &b, &e) != FW_OK && strstr(e.msg, "not positive"), "zero time: %s", e.msg);
}

static void test_coeffs(void) {
    double a, b;
    fw_perf_coeffs(FW_PERF_ALLREDUCE, 8, &a, &b);
    CHECK(a == 6 && near(b, 1.75, 1e-12), "allreduce 8: %g %g (tree 2 log2 8 = 6, ring 2 x 7/8)", a, b);
    fw_perf_coeffs(FW_PERF_ALLREDUCE, 2, &a, &b);
    CHECK(a == 2 && b == 1, "allreduce 2: %g %g", a, b);
    fw_perf_coeffs(FW_PERF_ALLREDUCE, 3, &a, &b);
    CHECK(a == 4 && near(b, 4.0 / 3, 1e-12), "allreduce 3: %g %g (ring 4 < tree 4)", a, b);
    fw_perf_coeffs(FW_PERF_ALLTOALL, 4, &a, &b);
    CHECK(a == 3 && b == 0.75, "alltoall 4: %g %g", a, b);
    fw_perf_links L = {0};
    L.ab[FW_PERF_INTRA][FW_PERF_ALLREDUCE] = (fw_perf_ab){.alpha = 1e-6, .beta = 1e-9, .set = true};
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTRA, 4, 1e6), 4e-6 + 1.5e-3, 1e-9), "4 ranks, 1 MB");
    CHECK(fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTRA, 1, 1e6) == 0, "one rank: nothing");
    CHECK(fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTER, 4, 1e6) == 0, "class not set: nothing");
    /* The built-in H100 figures give back the measurement they come from. */
    fw_err e = {{0}};
    CHECK(fw_perf_links_builtin(&L, "h100", &e) == FW_OK, "%s", e.msg);
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTRA, 4, 14336), 24.3e-6, 0.01), "14 KB over 4: %g",
          fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTRA, 4, 14336));
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_ALLREDUCE, FW_PERF_INTRA, 4, 536870912), 2312e-6, 0.02), "512 MiB over 4");
    CHECK(fw_perf_links_builtin(&L, "a100", &e) != FW_OK && strstr(e.msg, "a100"), "%s", e.msg);
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[4][256];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 256, "%s/%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
    FILE *f = fopen(p, "w");
    if (!f) return p;
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_files(void) {
    fw_err e = {{0}};
    fw_perf_links L = {0};
    const char *ok = write_tmp("fw_perf_links.json",
                               "{\"format\": \"furrow-links\", \"version\": 1, \"links\": {\"inter\": {\"allreduce\":"
                               " {\"alpha_s\": 5e-5, \"beta_s_per_byte\": 1e-8}}}}");
    CHECK(fw_perf_links_load(&L, ok, &e) == FW_OK, "%s", e.msg);
    CHECK(L.ab[FW_PERF_INTER][FW_PERF_ALLREDUCE].set && L.ab[FW_PERF_INTER][FW_PERF_ALLREDUCE].alpha == 5e-5,
          "inter allreduce read");
    CHECK(!L.ab[FW_PERF_INTRA][FW_PERF_ALLREDUCE].set, "intra left unset");
    /* Measured points: inside their range the segment between the nearest two. */
    const char *pts = write_tmp("fw_perf_links_pts.json",
                                "{\"format\": \"furrow-links\", \"version\": 1, \"links\": {\"inter\": {\"sendrecv\":"
                                " {\"alpha_s\": 1e-4, \"beta_s_per_byte\": 1e-6, \"ranks\": 2,"
                                " \"points\": [[16, 2e-4], [1024, 1e-3], [16384, 0.13]]}}}}");
    CHECK(fw_perf_links_load(&L, pts, &e) == FW_OK, "%s", e.msg);
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_SENDRECV, FW_PERF_INTER, 2, 16384), 0.13, 1e-12), "a measured size");
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_SENDRECV, FW_PERF_INTER, 2, 8704), 1e-3 + 0.5 * 0.129, 1e-12), "between");
    CHECK(near(fw_perf_coll_s(&L, FW_PERF_SENDRECV, FW_PERF_INTER, 2, 65536), 1e-4 + 65536e-6, 1e-12), "beyond: alpha-beta");
    const char *desc = write_tmp("fw_perf_links_desc.json",
                                 "{\"format\": \"furrow-links\", \"version\": 1, \"links\": {\"inter\": {\"sendrecv\":"
                                 " {\"alpha_s\": 1e-4, \"beta_s_per_byte\": 1e-6, \"ranks\": 2,"
                                 " \"points\": [[1024, 1e-3], [16, 2e-4]]}}}}");
    CHECK(fw_perf_links_load(&L, desc, &e) != FW_OK && strstr(e.msg, "points[1]"), "sizes descending: %s", e.msg);
    const char *neg = write_tmp("fw_perf_links_neg.json",
                                "{\"format\": \"furrow-links\", \"version\": 1, \"links\": {\"intra\": {\"sendrecv\":"
                                " {\"alpha_s\": 5e-5, \"beta_s_per_byte\": -1}}}}");
    CHECK(fw_perf_links_load(&L, neg, &e) != FW_OK && strstr(e.msg, "links.intra.sendrecv") &&
              strstr(e.msg, "beta_s_per_byte"), "negative beta: %s", e.msg);
    const char *other = write_tmp("fw_perf_other.json", "{\"format\": \"furrow-compute\", \"version\": 1}");
    CHECK(fw_perf_links_load(&L, other, &e) != FW_OK && strstr(e.msg, "furrow-links"), "wrong format: %s", e.msg);
    fw_perf_compute C;
    const char *comp = write_tmp("fw_perf_compute.json",
                                 "{\"format\": \"furrow-compute\", \"version\": 1, \"tp\": 2, \"steps\": ["
                                 "{\"phase\": \"decode\", \"batch\": 4, \"tokens\": 1, \"layer_s\": 0.002},"
                                 "{\"phase\": \"prefill\", \"batch\": 1, \"tokens\": 64, \"layer_s\": 0.016}]}");
    CHECK(fw_perf_compute_load(&C, comp, &e) == FW_OK && C.n_rows == 2 && C.tp == 2, "%s", e.msg);
    double fixed;
    CHECK(near(fw_perf_layer_s(&C, false, 1, 4, &fixed, NULL), 0.001, 1e-12), "decode at tp 4: half of tp 2's");
    CHECK(near(fw_perf_layer_s(&C, true, 128, 2, &fixed, NULL), 0.032, 1e-12), "prefill of 128 tokens: twice 64's");
    const char *badphase = write_tmp("fw_perf_compute_bad.json",
                                     "{\"format\": \"furrow-compute\", \"version\": 1, \"tp\": 1, \"steps\": ["
                                     "{\"phase\": \"verify\", \"batch\": 4, \"tokens\": 1, \"layer_s\": 0.002}]}");
    CHECK(fw_perf_compute_load(&C, badphase, &e) != FW_OK && strstr(e.msg, "steps[0]"), "bad phase: %s", e.msg);
    CHECK(fw_perf_compute_load(&C, "/nonexistent/x.json", &e) != FW_OK && strstr(e.msg, "/nonexistent/x.json"),
          "missing file: %s", e.msg);
}

/* tiny (3 layers, hidden 256) on 4 CPU ranks, the step added up by hand. */
static void test_predict(void) {
    fw_config c;
    fw_err e = {{0}};
    CHECK(fw_synth_preset("tiny", &c, &e) == FW_OK, "%s", e.msg);
    fw_perf_compute C = {.tp = 1, .n_rows = 1, .rows = {{false, 4, 1, 1e-3, 0, 0}}};
    snprintf(C.source, sizeof C.source, "test");
    fw_perf_links L = {0};
    L.ab[FW_PERF_INTRA][FW_PERF_ALLREDUCE] = (fw_perf_ab){.alpha = 1e-5, .beta = 1e-9, .set = true};
    L.ab[FW_PERF_INTER][FW_PERF_ALLREDUCE] = (fw_perf_ab){.alpha = 1e-4, .beta = 1e-8, .set = true};
    L.ab[FW_PERF_INTER][FW_PERF_SENDRECV] = (fw_perf_ab){.alpha = 2e-4, .beta = 2e-8, .set = true};
    fw_perf_req r = {.prefill = false, .batch = 4, .tokens = 1, .hidden = 256, .value_bytes = 4,
                     .ranks_per_node = 2, .together = false};
    /* tp 2 inside a node: 4 sequences one by one, each 3 layers of 0.5 ms and
     * 7 all-reduces of 1 KB; then the next tokens' broadcast (send/recv not
     * set within a node: nothing) and the argmax all-reduce of 8 bytes x 4. */
    fw_layout l;
    fw_plan_request q = {.world = 2, .ranks_per_node = 2, .tp = 2, .pp = 1};
    CHECK(fw_plan(&c, &q, &l, &e) == FW_OK, "%s", e.msg);
    fw_perf_step s;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    const double ar = 2e-5 + 1024e-9, arg = 2e-5 + 32e-9;
    CHECK(near(s.step_s, 4 * (3 * 0.5e-3 + 7 * ar) + arg, 1e-9), "tp 2: %g, want %g", s.step_s,
          4 * (3 * 0.5e-3 + 7 * ar) + arg);
    CHECK(near(s.tokens_s, 4 / s.step_s, 1e-12), "tokens/s");
    /* The same on two nodes of one rank each: the inter-node figures. */
    r.ranks_per_node = 1;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    const double ar2 = 2e-4 + 1024e-8, arg2 = 2e-4 + 32e-8, bc2 = 2e-4 + 16 * 2e-8;
    CHECK(near(s.step_s, 4 * (3 * 0.5e-3 + 7 * ar2) + arg2 + bc2, 1e-9), "tp 2 over nodes: %g", s.step_s);
    /* A wait of 1 ms at every all-reduce (CPU ranks reaching it apart) counts
     * where it is longer than the transfer: the argmax's (0.2 ms), not the
     * layers' (0.21 ms -> 1 ms: all of them). With 0.1 ms, none. */
    C.rows[0].wait_s = 1e-3;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    CHECK(near(s.step_s, 4 * (3 * 0.5e-3 + 7 * 1e-3) + 1e-3 + bc2, 1e-9), "tp 2 with 1 ms waits: %g", s.step_s);
    C.rows[0].wait_s = 1e-4;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    CHECK(near(s.step_s, 4 * (3 * 0.5e-3 + 7 * ar2) + arg2 + bc2, 1e-9), "tp 2 with 0.1 ms waits: %g", s.step_s);
    C.rows[0].wait_s = 0;
    /* pp 2 over two nodes: stages of 2 and 1 layers (cost-balanced; the head
     * counts on the last), a hop of 1 KB, pipelined over 4 sequences. */
    q = (fw_plan_request){.world = 2, .ranks_per_node = 1, .tp = 1, .pp = 2};
    CHECK(fw_plan(&c, &q, &l, &e) == FW_OK, "%s", e.msg);
    C.rows[0].layer_s = 1e-3;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    const double hop = 2e-4 + 1024 * 2e-8;
    const double s0 = l.stages[0].n_layers * 1e-3 + hop, s1 = l.stages[1].n_layers * 1e-3;
    const double want = s0 + s1 + 3 * (s0 > s1 ? s0 : s1) + bc2;
    CHECK(near(s.step_s, want, 1e-9), "pp 2: %g, want %g", s.step_s, want);
    /* tp 2 x pp 2 on 2 nodes of 2 ranks: both tp ranks of stage 0 send to
     * the next node; with one link per node they share it (the hop's bytes
     * twice), with one per rank they do not. */
    q = (fw_plan_request){.world = 4, .ranks_per_node = 2, .tp = 2, .pp = 2};
    CHECK(fw_plan(&c, &q, &l, &e) == FW_OK, "%s", e.msg);
    r.ranks_per_node = 2, r.nics_per_node = 1;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    const double shared = s.step_s, extra = 1024 * 2e-8; /* the second sender's 1 KB */
    r.nics_per_node = 0;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) == FW_OK, "%s", e.msg);
    /* The hop is in the first slot and, if stage 0 is the slower, in the 3 after. */
    CHECK(shared >= s.step_s + extra * (1 - 1e-9) && shared <= s.step_s + 4 * extra * (1 + 1e-9),
          "shared link: step %g, own links %g", shared, s.step_s);
    /* Compute figures without a prefill row: the error says so. */
    r.prefill = true;
    CHECK(fw_perf_predict(&l, &C, &L, &r, &s, &e) != FW_OK && strstr(e.msg, "prefill"), "%s", e.msg);
    fw_config_free(&c);
}

int main(void) {
    test_fit();
    test_coeffs();
    test_files();
    test_predict();
    return check_result();
}
