/* The scheduler driving the engine on every rank of a replica. Replica rank 0
 * (the leader) plans each step with runtime/sched, broadcasts it (positions,
 * token ids, block tables) to the replica, runs its part, samples, and commits;
 * the other ranks follow the broadcast plans until the leader says stop. All
 * ranks hold the same paged KV pool, filled through the tables of the plan. */
#ifndef FW_RUNTIME_ENGINE_RUNNER_H
#define FW_RUNTIME_ENGINE_RUNNER_H

#include "runtime/engine/engine.h"
#include "runtime/model/kvcache.h"
#include "runtime/engine/sched.h"

typedef struct fw_runner {
    fw_engine *en;
    bool leader;
    fw_kv_pool pool;
    fw_sched sched;            /* leader only */
    int64_t *wire;             /* the broadcast plan */
    int64_t wire_cap;
    float *logits;             /* (group, V) leader: rows for the samplers */
    int32_t *step_ids;         /* (token_budget) a group's token ids */
    int32_t *step_tabs;        /* (group, max blocks) a group's block tables */
    int group;                 /* decodes per forward */
    fw_seq_step *q;            /* (group) a group's sequences */
    fw_kv *kv;
    int *kinds;
    int64_t *toff;             /* (group) each entry's first token in step_ids */
    fw_sample_out *out;        /* (max_batch) */
    fw_engine_best *best;      /* (max_batch) */
    int32_t *best_tok;
    int *best_at;
    int32_t *top_ids;          /* (tp * FW_SAMPLE_TOP_MAX) top-k candidates */
    float *top_vals;
    int max_batch;
    int64_t group_tokens;      /* tokens of a decode group at most */
    /* Speculative decoding (--speculative mtp:K) */
    int spec_k;                /* draft tokens a step; 0: none */
    fw_spec_out *spec;         /* (max_batch) leader: the step's accepted drafts and next drafts */
    int *gacc;                 /* (group) drafts accepted per entry of a group, on every rank */
    int32_t (*gtok)[FW_SPEC_MAX + 1];  /* (group) the greedy tokens of its rows */
    int32_t *mtp_ids;          /* the MTP layer's next-token inputs */
    float *mtp_h, *mtp_hout;   /* its hidden states in and out */
    fw_seq_step *qm;           /* (group) its sequences */
    fw_kv *kvm;
    int *mtp_at;               /* (group) their entries in the group */
    int32_t *wire_acc;         /* (group, K + 2) sampled entries' accepted drafts and token, broadcast */
    float *probs;              /* (vocab) leader: a row's distribution */
    int64_t steps, tokens;     /* counters for reports */
    double last_step_s;
    double t_sent;             /* leader: when the last plan or heartbeat went out */
    bool heard;                /* follower: a plan came, so plans (or heartbeats) keep coming */
} fw_runner;

/* Token budget and the pool's geometry go to every rank alike; callbacks and
 * queue limits matter on the leader. The engine must have been built with
 * context >= token_budget. Collective over the replica. */
int fw_runner_init(fw_runner *r, fw_engine *en, const fw_sched_opts *o, fw_err *e);
void fw_runner_free(fw_runner *r);
/* A replica for a scheduler (serve, batch jobs): the engine, taking a step's
 * token budget per call, then the runner. `job` begins the error for a layout
 * of more than one replica ("serve runs", "batch jobs run"). The engine needs
 * fw_engine_free whatever the result; the runner is zeroed first, so
 * fw_runner_free is safe too. Collective. */
int fw_runner_open(fw_runner *r, fw_engine *en, fw_world *w, fw_engine_opts *eo, const fw_sched_opts *so,
                   const char *job, fw_err *e);
/* Leader: plans, broadcasts and runs one step; *n = its entries (0: idle,
 * nothing sent). */
int fw_runner_step(fw_runner *r, int *n, fw_err *e);
/* Leader, while it has nothing to run: with a watchdog, a heartbeat to the
 * followers (and back) every quarter of its bound, so a stopped rank is found
 * by the others while the server is idle. Cheap to call often. */
int fw_runner_idle(fw_runner *r, fw_err *e);
/* Leader: tells the followers to return from fw_runner_follow. */
void fw_runner_stop(fw_runner *r);
/* Followers: run the leader's steps until it stops. */
int fw_runner_follow(fw_runner *r, fw_err *e);

/* The scheduler limits by default (the flags: runtime/cli/cli.h). */
void fw_runner_defaults(fw_sched_opts *o);

#endif
