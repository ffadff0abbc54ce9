#!/bin/bash
# CI: a single-node SLURM on this machine (Debian 12, root, no systemd; Debian's slurm-wlm 22.05 + munge): node
# "localhost" with every CPU and the real memory, partitions "cpu" (default) and "gpu" (same node, no GPU), no
# accounting database (the profile's status command is squeue: MinJobAge=300 keeps finished jobs visible).
# Daemon PIDs go to $STATE/pids, read by .ci/slurm_down.sh (which stops them by PID, never by name).
set -euo pipefail
STATE=${STATE:-${TMPDIR:-/tmp}/nre-slurm}
mkdir -p "$STATE"
: > "$STATE/pids"
t0=$(date +%s)
log() { echo "[slurm_up $(( $(date +%s) - t0 ))s] $*"; }
wait_for() { for _ in $(seq 150); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out: $1" >&2; return 1; }

missing=""
for p in slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "apt-get install$missing"
  apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $missing >/dev/null
fi

read -r CPUS SOCK CORES THREADS MEM < <(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '
  $1=="CPUs"{c=$2} $1=="SocketsPerBoard"{s=$2} $1=="CoresPerSocket"{k=$2} $1=="ThreadsPerCore"{t=$2}
  $1=="RealMemory"{m=$2} END{print c, s, k, t, m}')
log "node: CPUs=$CPUS RealMemory=$MEM"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=$SOCK CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF

mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
[ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; }
rm -f /run/munge/munged.pid
runuser -u munge -- /usr/sbin/munged --force
wait_for "test -s /run/munge/munged.pid"
echo "munged $(cat /run/munge/munged.pid)" >> "$STATE/pids"
munge -n | unmunge >/dev/null

/usr/sbin/slurmctld
wait_for "scontrol ping | grep -q UP"
echo "slurmctld $(cat /run/slurmctld.pid)" >> "$STATE/pids"
/usr/sbin/slurmd -N localhost
wait_for "sinfo -h -N -o %t | grep -q -E '^idle'"
echo "slurmd $(cat /run/slurmd.pid)" >> "$STATE/pids"

# one real job end to end, and squeue must still show it finished (the profile's status command relies on it)
jid=$(sbatch --parsable -o "$STATE/check_%j.out" --wrap 'echo sbatch-ok cpus=$SLURM_CPUS_ON_NODE')
wait_for "squeue -h -j $jid -t all -o %T | grep -q COMPLETED"
grep -q sbatch-ok "$STATE/check_$jid.out"
sinfo
log "ready; pids: $(tr '\n' ' ' < "$STATE/pids")"
