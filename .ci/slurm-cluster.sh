#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, started by hand: no systemd, nothing under /etc touched.
# It is what CI runs the sweep test on (tests/Sweep/SlurmTests.cs), and a recipe for trying the documented job array
# (docs/sweeps.md) before sending it to a real cluster.
#
#   apt-get install slurm-wlm munge          # Debian's packages: slurmctld, slurmd, the client commands, munged
#   .ci/slurm-cluster.sh start [DIR]         # DIR holds every file of the cluster (default /tmp/perturb-slurm)
#   export SLURM_CONF=DIR/slurm.conf         # then sbatch, squeue, scontrol ... talk to this cluster
#   .ci/slurm-cluster.sh status [DIR]        # sinfo
#   .ci/slurm-cluster.sh stop [DIR]          # stops slurmd, slurmctld and munged (by the pids they wrote)
#
# Run it as root (as CI does): slurmd starts each job as the submitting user. Ports: SLURM_CTLD_PORT (6817) and
# SLURM_D_PORT (6818). The steps:
#   1. munged with its own key, socket, pid and log under DIR/munge (every Slurm message is signed by munge);
#   2. a small slurm.conf: this host as controller and the only node, with its real CPUs and memory, one partition,
#      no accounting database, process tracking by /proc (no cgroups needed), a scheduler pass every 2 s, and
#      cred_expire=10 (a requeued job waits cred_expire + 1 s before it may start again: 121 s by default);
#   3. slurmctld and slurmd, each writing its log and pid under DIR; then wait until the node is idle.
set -euo pipefail
cmd=${1:-start}
D=$(realpath -m "${2:-/tmp/perturb-slurm}")
host=$(hostname -s)
ctld_port=${SLURM_CTLD_PORT:-6817}
d_port=${SLURM_D_PORT:-6818}
export SLURM_CONF="$D/slurm.conf"

die() { echo "error: slurm-cluster: $*" >&2; exit 1; }

stop_pid() { # stop_pid FILE: ends the process whose id FILE holds, if it is running
  [[ -f "$1" ]] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

case "$cmd" in
  stop)
    stop_pid "$D/slurmd.pid"; stop_pid "$D/slurmctld.pid"; stop_pid "$D/munge/munged.pid"
    echo "slurm-cluster: stopped ($D)"; exit 0 ;;
  status)
    exec sinfo ;;
  start) ;;
  *) die "unknown command '$cmd' (start, status or stop)" ;;
esac

for b in munged slurmctld slurmd sbatch scontrol sinfo; do
  command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || die "$b is not installed (apt-get install slurm-wlm munge)"
done
[[ $(id -u) -eq 0 ]] || die "run it as root: slurmd starts jobs as their users"
export PATH="$PATH:/usr/sbin"

if [[ -f "$D/slurmctld.pid" ]] && kill -0 "$(cat "$D/slurmctld.pid")" 2>/dev/null && sinfo -h -o %T 2>/dev/null | grep -q idle; then
  echo "slurm-cluster: already running ($D)"; exit 0
fi

# 1. munge: a fresh key for this cluster, readable by root only (munged checks the permissions).
mkdir -p "$D/munge" "$D/state" "$D/spool"
chmod 0755 "$D"; chmod 0700 "$D/munge"
[[ -f "$D/munge/munge.key" ]] || mungekey --create --keyfile="$D/munge/munge.key" >/dev/null 2>&1 \
  || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$D/munge/munge.key"
stop_pid "$D/munge/munged.pid"
munged --force --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
  --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"

# 2. slurm.conf: this host, its CPUs and memory (MiB), one partition.
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat > "$D/slurm.conf" <<EOF
ClusterName=perturb
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

# 3. the daemons; -c: a clean start, forgetting jobs of an earlier run of this cluster.
stop_pid "$D/slurmd.pid"; stop_pid "$D/slurmctld.pid"
slurmctld -c -f "$D/slurm.conf"
slurmd -c -f "$D/slurm.conf"
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "slurm-cluster: running: node $host, $cpus CPUs, ${mem} MiB; export SLURM_CONF=$D/slurm.conf"; exit 0
  fi
  sleep 0.3
done
echo "--- slurmctld.log" >&2; tail -n 20 "$D/slurmctld.log" >&2 || true
echo "--- slurmd.log" >&2; tail -n 20 "$D/slurmd.log" >&2 || true
die "the node did not come up idle within 30 s (logs above, in $D)"
