#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_generate(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow generate: not built yet\n");
    return 1;
}
