#!/usr/bin/env bash
# start_cluster.sh - a real single-node Slurm cluster on this machine, for robustflow's
# SLURM test (tests/test_slurm.py). Debian 12 (Slurm 22.05 from Debian), run as root,
# no systemd needed.
#
#   start_cluster.sh [start]   install + configure + start (idempotent; safe to re-run).
#                              If a controller not configured by this script already
#                              answers `sinfo`, it is left alone and nothing is started.
#   start_cluster.sh stop      stop the daemons this script started (recorded in
#                              $STARTED, each signalled by its PID file only)
#   start_cluster.sh status    show daemons and sinfo
#
# Environment:
#   SLURM_ACCOUNTING=dbd   (default) slurmdbd + MariaDB on localhost, so `sacct`
#                          works (snakemake-executor-plugin-slurm polls with sacct
#                          by default and hangs forever without it)
#   SLURM_ACCOUNTING=none  no database; then run snakemake with
#                          --slurm-status-command squeue
#   SLURM_FAKE_GPUS=N      fake GPUs declared as GRES gpu (default 1; 0 = none).
#                          Each is a symlink to /dev/null, so --gpus/--gres=gpu
#                          jobs are scheduled and get CUDA_VISIBLE_DEVICES.
#   SLURM_CI_ACCOUNT=name  Slurm account created for the current user (dbd only;
#                          default "ciacct")
set -euo pipefail

ACTION=${1:-start}
ACCT=${SLURM_ACCOUNTING:-dbd}
NGPU=${SLURM_FAKE_GPUS:-1}
CI_ACCOUNT=${SLURM_CI_ACCOUNT:-ciacct}
DBPASS=slurm_ci_local_only   # throw-away password of a localhost-only test database
HOST=$(hostname -s)
ME=$(id -un)
STARTED=/run/robustflow-slurm-ci.started   # names of the daemons this script launched
CONF_MARK="# single-node CI cluster, written by start_cluster.sh"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[start_cluster] $*" >&2; }
launched() { grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >> "$STARTED"; }

# ---- process helpers: only ever signal the PID recorded in a pid file, after
# ---- checking that it is the expected program.
pid_alive() { # pidfile comm
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop_pid() { # pidfile comm
    local pid i
    if pid_alive "$1" "$2"; then
        pid=$(cat "$1")
        log "stopping $2 (pid $pid)"
        kill -TERM "$pid" || true
        for i in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
        if [ -d "/proc/$pid" ]; then kill -KILL "$pid" || true; fi
    fi
    # a stale pid file (e.g. /run/slurmctld.pid) makes the Debian prerm fail
    pid_alive "$1" "$2" || rm -f "$1"
}
wait_for() { # seconds description command...
    local n=$(( $1 * 4 )) what=$2 i; shift 2
    for i in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    log "timed out waiting for $what"; return 1
}
# write stdin to $1 (mode $2, owner $3) only if the content changed; rc 0 = changed
write_if_changed() {
    local tmp; tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
    install -m "$2" -o "$3" -g "$3" "$tmp" "$1"; rm -f "$tmp"; return 0
}

do_stop() {
    local f
    [ -f "$STARTED" ] || { log "nothing started by this script"; return 0; }
    # reverse start order: the slurm daemons before the database and munge they use
    for f in /run/slurmd.pid:slurmd /run/slurmctld.pid:slurmctld /run/slurmdbd.pid:slurmdbd \
             /run/mysqld/mysqld.pid:mariadbd /run/munge/munged.pid:munged; do
        grep -qx "${f##*:}" "$STARTED" && stop_pid "${f%%:*}" "${f##*:}"
    done
    rm -f "$STARTED"
}

do_status() {
    local f
    for f in /run/munge/munged.pid:munged /run/mysqld/mysqld.pid:mariadbd \
             /run/slurmdbd.pid:slurmdbd /run/slurmctld.pid:slurmctld /run/slurmd.pid:slurmd; do
        if pid_alive "${f%%:*}" "${f##*:}"; then echo "${f##*:} running pid $(cat "${f%%:*}")"
        else echo "${f##*:} not running"; fi
    done
    sinfo 2>&1 || true
}

case "$ACTION" in
    stop) do_stop; exit 0 ;;
    status) do_status; exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

T0=$(date +%s)

if command -v sinfo >/dev/null && ! grep -qxF "$CONF_MARK" /etc/slurm/slurm.conf 2>/dev/null &&
        sinfo -h >/dev/null 2>&1; then
    log "a SLURM controller not configured by this script is reachable; leaving it alone"
    exit 0
fi

# ---------------------------------------------------------------- packages
pkgs="slurmctld slurmd slurm-client munge"
[ "$ACCT" = dbd ] && pkgs="$pkgs slurmdbd mariadb-server"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
log "packages ready ($(( $(date +%s) - T0 ))s)"

# ---------------------------------------------------------------- hostname
if ! getent hosts "$HOST" >/dev/null; then
    log "adding $HOST to /etc/hosts"
    echo "127.0.0.1 $HOST" >> /etc/hosts
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
pid_alive /run/munge/munged.pid munged || { runuser -u munge -- /usr/sbin/munged; launched munged; }
wait_for 15 munged sh -c 'munge -n | unmunge'

# ---------------------------------------------------------------- directories
install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
install -d -o root -g root /var/spool/slurmd /etc/slurm

# ---------------------------------------------------------------- accounting db
if [ "$ACCT" = dbd ]; then
    install -d -o mysql -g mysql /run/mysqld
    if ! pid_alive /run/mysqld/mysqld.pid mariadbd; then
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
        setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
            >>/var/log/slurm/mariadbd.log 2>&1 </dev/null
        launched mariadbd
    fi
    wait_for 60 mariadb mariadb-admin --silent ping
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
                CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    if write_if_changed /etc/slurm/slurmdbd.conf 600 slurm <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
    then stop_pid /run/slurmdbd.pid slurmdbd; fi
    pid_alive /run/slurmdbd.pid slurmdbd || { /usr/sbin/slurmdbd; launched slurmdbd; }
    wait_for 30 slurmdbd bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi

# ---------------------------------------------------------------- slurm.conf
# hardware as slurmd sees it (CPUs, sockets, cores, threads, RealMemory in MB)
eval "$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=')"
MEM=$(( RealMemory * 90 / 100 ))     # a bit below the real amount
GRES_NODE="" GRES_TYPES=""
if [ "$NGPU" -gt 0 ]; then
    GRES_TYPES="GresTypes=gpu"
    # GPU usage in sacct's AllocTRES (slurmctld refuses this TRES without slurmdbd)
    [ "$ACCT" = dbd ] && GRES_TYPES="$GRES_TYPES
AccountingStorageTRES=gres/gpu"
    GRES_NODE=" Gres=gpu:$NGPU"
    install -d /var/lib/slurm-fakegpu
    for i in $(seq 0 $(( NGPU - 1 ))); do ln -sfn /dev/null "/var/lib/slurm-fakegpu/gpu$i"; done
fi
changed=0
if write_if_changed /etc/slurm/slurm.conf 644 root <<EOF
$CONF_MARK
ClusterName=ci
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
# no cgroups anywhere
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
$ACCT_LINES
$GRES_TYPES
NodeName=$HOST CPUs=$CPUs Sockets=$SocketsPerBoard CoresPerSocket=$CoresPerSocket ThreadsPerCore=$ThreadsPerCore RealMemory=$MEM$GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
then changed=1; fi
if [ "$NGPU" -gt 0 ]; then
    write_if_changed /etc/slurm/gres.conf 644 root <<EOF && changed=1
NodeName=$HOST Name=gpu File=/var/lib/slurm-fakegpu/gpu[0-$(( NGPU - 1 ))]
EOF
else
    if [ -e /etc/slurm/gres.conf ]; then rm -f /etc/slurm/gres.conf; changed=1; fi
fi
if [ "$changed" = 1 ]; then          # config changed: restart what is running
    stop_pid /run/slurmd.pid slurmd
    stop_pid /run/slurmctld.pid slurmctld
fi

# ---------------------------------------------------------------- daemons
pid_alive /run/slurmctld.pid slurmctld || { /usr/sbin/slurmctld; launched slurmctld; }
wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
pid_alive /run/slurmd.pid slurmd || { /usr/sbin/slurmd; launched slurmd; }
node_ok() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated|completing)$'; }
if ! wait_for 20 "node $HOST" node_ok; then
    # e.g. drained after a configuration change: resume it once
    scontrol update NodeName="$HOST" State=RESUME || true
    wait_for 20 "node $HOST" node_ok
fi

# ---------------------------------------------------------------- accounts
if [ "$ACCT" = dbd ]; then
    wait_for 30 "cluster registration" sh -c 'sacctmgr -n list cluster format=cluster | grep -qw ci'
    sacctmgr -n list account "$CI_ACCOUNT" format=account | grep -qw "$CI_ACCOUNT" ||
        sacctmgr -i add account "$CI_ACCOUNT" Cluster=ci Description=ci Organization=ci >/dev/null
    sacctmgr -n list assoc user="$ME" account="$CI_ACCOUNT" format=user | grep -qw "$ME" ||
        sacctmgr -i add user "$ME" Account="$CI_ACCOUNT" >/dev/null
fi

log "slurm $(sinfo -V | awk '{print $2}') up after $(( $(date +%s) - T0 ))s (accounting=$ACCT, fake gpus=$NGPU)"
do_status
