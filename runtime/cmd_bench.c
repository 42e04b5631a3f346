#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_bench(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow bench: not built yet\n");
    return 1;
}
