/* Reading shared/golden's reference.h5 (one group per prompt) for the golden
 * parity checks, and the relative error they report. */
#ifndef FW_TESTS_GOLDEN_REF_H
#define FW_TESTS_GOLDEN_REF_H

#include <hdf5.h>
#include <stdint.h>

typedef struct prompt {
    int64_t n_tok, n_greedy, V;
    int32_t *tokens, *greedy;
    float *logits, *greedy_logits, *margin;
} prompt;

/* Reads /prompts/<i>; 0 on success. */
int load_prompt(hid_t f, int i, prompt *p);
void free_prompt(prompt *p);
/* Whether /prompts/<i> exists. */
int has_prompt(hid_t f, int i);
/* max |a - b| / max |b| over n values (inf if a holds a non-finite value). */
double rel_err(const float *a, const float *b, int64_t n);

#endif
