# Sourced by tests that wait for a server, a replica or a job to change state.
# until_true SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds;
# fails when SECONDS pass first.
until_true() {
  local n=$(($1 * 10)); shift
  while ! "$@"; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.1; done
}
