/* furrow: one binary, several subcommands (runtime/cli/dispatch.c), CPU only. */
#include "runtime/cli/cli.h"

int main(int argc, char **argv) { return fw_main(argc, argv); }
