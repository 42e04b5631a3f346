/* furrow: one binary, several subcommands (runtime/dispatch.c), CPU only. */
#include "runtime/cli.h"

int main(int argc, char **argv) { return fw_main(argc, argv); }
