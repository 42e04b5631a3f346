#include <stdio.h>

#include "runtime/cli.h"

int fw_cmd_synth(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "furrow synth: not built yet\n");
    return 1;
}
