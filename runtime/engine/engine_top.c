/* Top-k sampling across the vocabulary shards: each head rank sends its shard's
 * k largest logits and the shard's log-sum-exp, never the whole row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/engine.h"

typedef struct top_entry {
    float v;
    int32_t id;
} top_entry;

/* This rank's k best of its shard row, by value then lowest id; -1 ids pad. */
static double shard_top(const fw_engine *en, int r, int k, top_entry *t) {
    const fw_part *p = &en->model->part;
    const float *row = en->shard + (int64_t)r * p->vocab;
    int n = 0;
    for (int64_t i = 0; i < p->vocab; i++) {
        if (n == k && !(row[i] > t[n - 1].v)) continue;
        int j = n < k ? n++ : n - 1;
        while (j > 0 && t[j - 1].v < row[i]) t[j] = t[j - 1], j--;
        t[j] = (top_entry){row[i], (int32_t)(p->vocab0 + i)};
    }
    for (int j = n; j < k; j++) t[j] = (top_entry){-INFINITY, -1};
    double mx = n ? t[0].v : 0, sum = 0;
    for (int64_t i = 0; i < p->vocab; i++) sum += exp((double)row[i] - mx);
    return mx + log(sum);
}

int fw_engine_row_top(fw_engine *en, int row, int k, int32_t *ids, float *vals, int64_t *n_out, double *lse_out, fw_err *e) {
    const fw_part *p = &en->model->part;
    const int tp = p->tp;
    bool last = p->pp_rank == p->pp - 1;
    /* One message per shard: its lse then k entries. */
    size_t one = sizeof(double) + (size_t)k * sizeof(top_entry);
    fw_watch_note(en->wd, "gathering the top-k candidates on rank 0");
    char *mine = NULL, *all = NULL;
    int rc = FW_OK;
    if (last) {
        mine = malloc(one);
        if (p->tp_rank == 0) all = malloc(one * (size_t)tp);
        if (!mine || (p->tp_rank == 0 && !all)) rc = fw_errf(e, "out of memory for top-k candidates");
        if (rc == FW_OK) {
            double lse = shard_top(en, row, k, (top_entry *)(mine + sizeof(double)));
            memcpy(mine, &lse, sizeof lse);
            if (tp == 1) memcpy(all, mine, one);
            else if (MPI_Gather(mine, (int)one, MPI_BYTE, all, (int)one, MPI_BYTE, 0, en->world->tp_comm) != MPI_SUCCESS)
                rc = fw_errf(e, "gathering the top-k candidates failed");
        }
    }
    /* The head's tp rank 0 sends the shards' messages to replica rank 0 when that is another rank. */
    if (rc == FW_OK && en->replica_rank != en->head_root) {
        if (en->replica_rank == 0) {
            if (!(all = malloc(one * (size_t)tp))) rc = fw_errf(e, "out of memory for top-k candidates");
            else if (MPI_Recv(all, (int)(one * (size_t)tp), MPI_BYTE, en->head_root, FW_TAG_TOP, en->replica,
                              MPI_STATUS_IGNORE) != MPI_SUCCESS)
                rc = fw_errf(e, "receiving the top-k candidates failed");
        }
    } else if (rc == FW_OK && en->replica_rank == en->head_root && en->head_root != 0) {
        if (MPI_Send(all, (int)(one * (size_t)tp), MPI_BYTE, 0, FW_TAG_TOP, en->replica) != MPI_SUCCESS)
            rc = fw_errf(e, "sending the top-k candidates failed");
    }
    if (rc == FW_OK && en->replica_rank == 0) {
        double mx = -INFINITY, sum = 0, part[tp];
        int64_t n = 0;
        for (int r = 0; r < tp; r++) {
            memcpy(&part[r], all + one * (size_t)r, sizeof(double));
            mx = fmax(mx, part[r]);
            const top_entry *t = (const top_entry *)(all + one * (size_t)r + sizeof(double));
            for (int j = 0; j < k; j++)
                if (t[j].id >= 0) ids[n] = t[j].id, vals[n++] = t[j].v;
        }
        for (int r = 0; r < tp; r++) sum += exp(part[r] - mx);
        *n_out = n;
        *lse_out = mx + log(sum);
    }
    free(mine);
    free(all);
    fw_watch_note(en->wd, NULL);
    return rc;
}
