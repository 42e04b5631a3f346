/* Shared by the fuzz targets (fuzz_*.c): libFuzzer's entry points, and the check
 * that turns a broken promise of a parser into a crash, which libFuzzer reports
 * and saves and which fails the regression replay (replay.c) in `make check`. */
#ifndef FW_FUZZ_H
#define FW_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/text/data.h"
#include "io/text/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property every input must keep (an accepted value in its documented range,
 * a round trip that holds): on violation, say which and abort. */
#define FUZZ_CHECK(cond, ...)                                                       \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* What the parser said of an input: printed by the replay (its log then shows
 * which path each committed input takes), silent under libFuzzer. */
#ifdef FW_FUZZ_REPLAY
#define FUZZ_NOTE(...) (fprintf(stderr, "  "), fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#else
#define FUZZ_NOTE(...) ((void)0)
#endif

/* The DeepSeek-V3 tokenizer shipped with furrow, loaded once by a target's
 * LLVMFuzzerInitialize; exits naming `target` if it cannot be. */
static inline fw_tokenizer *fuzz_shipped_tokenizer(const char *target) {
    char dir[4096];
    fw_err e;
    fw_tokenizer *tok = NULL;
    if (!fw_data_tokenizer_dir(dir, sizeof dir)) {
        fprintf(stderr, "%s: the shipped tokenizer (io/text/tokenizers/deepseek-v3) is not found\n", target);
        exit(1);
    }
    if (fw_tokenizer_load_dir(&tok, dir, &e) != FW_OK) {
        fprintf(stderr, "%s: %s\n", target, e.msg);
        exit(1);
    }
    return tok;
}

#endif
