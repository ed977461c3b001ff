#!/usr/bin/env bash
# Stop the one-node cluster of ci/slurm/up.sh: slurmd, slurmctld, slurmdbd, MariaDB and munged, each by
# its own pid file (nothing else on the machine is signalled). Cancels the cluster's jobs first.
# --slurm-only: stop only the SLURM daemons (up.sh does so after rewriting their configuration).
set -uo pipefail
STATE="${SLURM_CI_STATE:-/var/lib/avloc-slurm-ci}"
stop() {  # stop NAME PIDFILE
    local pid
    [ -f "$2" ] || return 0
    pid="$(cat "$2" 2>/dev/null)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "+ stopping $1 ($pid)"
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && { echo "  $1 ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid"; }
    fi
    rm -f "$2"
}
if [ -f "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
    scancel --full --quiet --user=root 2>/dev/null || true
fi
stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
[ "${1:-}" = --slurm-only ] && exit 0
stop slurmdbd "$STATE/slurmdbd.pid"
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
echo "+ avloc-ci SLURM cluster stopped"
