#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine (root only; CI and test machines), for
# tests/test_slurm_cluster.py and for trying profiles/slurm by hand:
#   sudo ci/slurm/up.sh        # installs slurm-wlm, slurmdbd, munge, mariadb-server when missing
#   sbatch --wrap hostname; sbatch -p gpu --gres=gpu:1 --wrap true; sacct
#   sudo ci/slurm/down.sh
# One node (this host: its CPUs and memory as `slurmd -C` sees them), two partitions: `cpu` (default) and
# `gpu`, whose node advertises `gpu:N` GRES with no device files (gres.conf Count=, AutoDetect=off): GPU
# requests are scheduled and accounted as on a real cluster while CUDA stays invisible. Accounting runs
# through slurmdbd + MariaDB (sacct answers), with cluster `avloc-ci` and account `avloc` (root's default).
#
# Process tracking (task/none in both cases):
# - proctrack/cgroup where the cgroup v1 freezer hierarchy is mounted and writable (this project's CI
#   machines: a VM with the hybrid v1 layout). It tracks every process a step starts, also one that
#   leaves the process tree: the resident extraction workers (extractors/worker/, a new session
#   re-parented to init once their first client exits) are killed when their step ends.
# - proctrack/linuxproc otherwise (docker containers, cgroup v2-only hosts: SLURM 22.05's cgroup/v2
#   needs systemd's D-Bus to create its scope, which containers do not have). It follows the process
#   tree under slurmstepd only, so a re-parented worker outlives the allocation until its idle exit
#   (AVLOC_WORKER_IDLE_S); up.sh says so when it falls back.
# task/cgroup is not used: CPU binding and memory limits are not what the tests check, and it fails
# wherever proctrack/cgroup does.
# Idempotent: daemons already answering are left alone; configs are rewritten and, when they changed,
# the SLURM daemons are restarted. Any failure exits non-zero with the reason and the daemon's log tail.
# Environment: SLURM_CI_GPUS (GRES count, default 2), SLURM_CI_STATE (state/log folder, default
# /var/lib/avloc-slurm-ci), SLURM_CI_PROCTRACK (proctrack/cgroup or proctrack/linuxproc; default: see
# above).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${SLURM_CI_STATE:-/var/lib/avloc-slurm-ci}"
GPUS="${SLURM_CI_GPUS:-2}"
PROCTRACK="${SLURM_CI_PROCTRACK:-}"
CLUSTER=avloc-ci
ACCOUNT=avloc
CONF=/etc/slurm
MARKER="# avloc-ci:"

die() { echo "ci/slurm/up.sh: $*" >&2; exit 1; }
tail_log() { [ -f "$1" ] && { echo "--- last lines of $1:" >&2; tail -n 30 "$1" >&2; }; return 0; }
# wait_for SECONDS DESCRIPTION LOG COMMAND...: poll COMMAND once a second
wait_for() {
    local secs="$1" what="$2" log="$3"; shift 3
    for _ in $(seq "$secs"); do
        "$@" >/dev/null 2>&1 && return 0
        # a daemon started in the background that already died: no point in waiting
        if [ -n "${WAIT_PID:-}" ] && ! kill -0 "$WAIT_PID" 2>/dev/null; then tail_log "$log"; die "$what exited while starting"; fi
        sleep 1
    done
    tail_log "$log"; die "$what did not come up within ${secs} s (checked: $*)"
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons)"

# ---------------------------------------------------------------- packages
PKGS=(slurm-wlm slurm-client slurmdbd munge mariadb-server)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "+ apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d 101: the packages' own service starts are skipped (no init system here); we start them below
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/avloc-slurm-apt.log" 2>&1 || {
        apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" \
            >"${TMPDIR:-/tmp}/avloc-slurm-apt.log" 2>&1; } || {
        tail_log "${TMPDIR:-/tmp}/avloc-slurm-apt.log"; die "could not install ${missing[*]}"; }
fi
SLURM_VERSION="$(slurmctld -V)"

# ---------------------------------------------------------------- configuration
[ -f "$CONF/slurm.conf" ] && ! head -n 1 "$CONF/slurm.conf" | grep -q "^$MARKER" &&
    die "$CONF/slurm.conf exists and was not written by this script: refusing to overwrite a real cluster's configuration"
mkdir -p "$STATE"/{slurmctld,slurmd,log,db,fake-gpu} "$CONF"
[[ "$GPUS" =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_GPUS must be a positive integer, not '$GPUS'"
for i in $(seq 0 $(( GPUS - 1 ))); do touch "$STATE/fake-gpu/nvidia$i"; done
chmod 0755 "$STATE"
if [ -z "$PROCTRACK" ]; then
    probe=/sys/fs/cgroup/freezer/avloc-ci-probe-$$
    if [ -d /sys/fs/cgroup/freezer ] && mkdir "$probe" 2>/dev/null && rmdir "$probe"; then
        PROCTRACK=proctrack/cgroup
    else
        PROCTRACK=proctrack/linuxproc
        echo "ci/slurm/up.sh: no writable cgroup v1 freezer hierarchy: proctrack/linuxproc, which does not" \
             "track processes that leave a step's process tree (resident workers outlive their allocation)" >&2
    fi
fi
case "$PROCTRACK" in proctrack/cgroup) CGROUP_PLUGIN=cgroup/v1 ;; proctrack/linuxproc|proctrack/pgid) CGROUP_PLUGIN=autodetect ;;
    *) die "SLURM_CI_PROCTRACK must be proctrack/cgroup, proctrack/linuxproc or proctrack/pgid, not '$PROCTRACK'" ;; esac
HOST="$(hostname -s)"
getent hosts "$HOST" >/dev/null || die "this host's name '$HOST' does not resolve (add it to /etc/hosts)"
read -r CPUS BOARDS SOCKETS CORES THREADS MEM < <(slurmd -C | awk '
    /^NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                  print v["CPUs"], v["Boards"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
[ -n "${MEM:-}" ] || die "slurmd -C did not report this node's CPUs and memory"
MEM=$(( MEM * 9 / 10 ))  # a little below the total, so the node is never drained for "low RealMemory"
DBPASS_FILE="$STATE/db/password"
[ -s "$DBPASS_FILE" ] || { (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DBPASS_FILE"); }
DBPASS="$(cat "$DBPASS_FILE")"
render() {  # render TEMPLATE DEST MODE: returns 0 when DEST changed
    local tmp; tmp="$(mktemp)"
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@BOARDS@|$BOARDS|g" -e "s|@SOCKETS@|$SOCKETS|g" -e "s|@CORES@|$CORES|g" -e "s|@THREADS@|$THREADS|g" \
        -e "s|@MEM@|$MEM|g" -e "s|@GPUS@|$GPUS|g" -e "s|@GPU_MAX@|$(( GPUS - 1 ))|g" -e "s|@CPU_PART@|cpu|g" -e "s|@GPU_PART@|gpu|g" \
        -e "s|@PROCTRACK@|$PROCTRACK|g" -e "s|@CGROUP_PLUGIN@|$CGROUP_PLUGIN|g" -e "s|@DBPASS@|$DBPASS|g" "$HERE/templates/$1" > "$tmp"
    if cmp -s "$tmp" "$2"; then rm -f "$tmp"; return 1; fi
    install -m "$3" "$tmp" "$2"; rm -f "$tmp"; return 0
}
changed=0
render slurm.conf.in "$CONF/slurm.conf" 0644 && changed=1
render gres.conf.in "$CONF/gres.conf" 0644 && changed=1
render cgroup.conf.in "$CONF/cgroup.conf" 0644 && changed=1
render slurmdbd.conf.in "$CONF/slurmdbd.conf" 0600 && changed=1
if [ "$changed" = 1 ]; then
    echo "+ configuration written ($CONF: node $HOST, $CPUS CPUs, ${MEM} MB, gpu:$GPUS, $PROCTRACK)"
    "$HERE/down.sh" --slurm-only
fi

# ---------------------------------------------------------------- munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    echo "+ munged"
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start (see /var/log/munge/munged.log)"
    wait_for 20 munged /var/log/munge/munged.log sh -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- MariaDB (slurmdbd's storage)
if ! mariadb -u root -e 'SELECT 1' >/dev/null 2>&1; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    echo "+ mariadbd"
    # --tmpdir: not the caller's TMPDIR, which the mysql user may not be allowed to write
    nohup /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --tmpdir=/tmp \
        --pid-file=/run/mysqld/mysqld.pid --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M \
        >"$STATE/log/mariadb.log" 2>&1 &
    WAIT_PID=$! wait_for 60 MariaDB "$STATE/log/mariadb.log" mariadb -u root -e 'SELECT 1'
fi
mariadb -u root <<SQL || die "could not create the slurm database user in MariaDB"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ---------------------------------------------------------------- slurmdbd, then the accounting entities
if ! alive "$STATE/slurmdbd.pid"; then
    echo "+ slurmdbd"
    slurmdbd || { tail_log "$STATE/log/slurmdbd.log"; die "slurmdbd did not start"; }
fi
wait_for 60 slurmdbd "$STATE/log/slurmdbd.log" sacctmgr -n show cluster
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="avloc CI" organization=avloc >/dev/null
sacctmgr -n -P show assoc where user=root account="$ACCOUNT" format=user | grep -qx root ||
    sacctmgr -i add user root account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null
sacctmgr -n -P show assoc where user=root account="$ACCOUNT" format=user | grep -qx root ||
    die "sacctmgr did not create the association root/$ACCOUNT on $CLUSTER"

# ---------------------------------------------------------------- slurmctld, slurmd
if ! alive "$STATE/slurmctld.pid"; then
    echo "+ slurmctld"
    slurmctld || { tail_log "$STATE/log/slurmctld.log"; die "slurmctld did not start"; }
fi
wait_for 60 slurmctld "$STATE/log/slurmctld.log" scontrol ping
if ! alive "$STATE/slurmd.pid"; then
    echo "+ slurmd"
    slurmd || { tail_log "$STATE/log/slurmd.log"; die "slurmd did not start"; }
fi
node_idle() { [ "$(sinfo -h -n "$HOST" -o '%T' | sort -u)" = idle ]; }
# a node left "down"/"drained" from an earlier run comes back
for _ in 1 2 3; do node_idle && break; sleep 2; done
node_idle || scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
wait_for 60 "node $HOST (idle in sinfo)" "$STATE/log/slurmd.log" node_idle
wait_for 30 "sacct" "$STATE/log/slurmdbd.log" sacct -n -a -X -S now-1minute
echo "+ $SLURM_VERSION: cluster $CLUSTER up, node $HOST idle ($CPUS CPUs, ${MEM} MB, gpu:$GPUS), partitions cpu (default) and gpu, account $ACCOUNT; $PROCTRACK, task/none; state and logs in $STATE"
sinfo
