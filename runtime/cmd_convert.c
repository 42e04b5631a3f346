#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_convert(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow convert: not built yet\n");
    return 1;
}
