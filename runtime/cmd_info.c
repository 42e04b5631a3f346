#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_info(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow info: not built yet\n");
    return 1;
}
