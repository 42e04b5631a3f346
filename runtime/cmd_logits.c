#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_logits(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow logits: not built yet\n");
    return 1;
}
