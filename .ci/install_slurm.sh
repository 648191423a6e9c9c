#!/usr/bin/env bash
# A one-node Slurm cluster on localhost for the suite's Slurm tests (Debian: slurm-wlm, munge).
#
#   sudo .ci/install_slurm.sh            install (apt-get, if missing), configure, start
#   .ci/install_slurm.sh --start-only    configure and start only (no apt-get)
#
# Writes /etc/slurm/slurm.conf (node "localhost", 2 CPUs, partition "debug", no accounting, no
# cgroups so it runs inside containers), creates a munge key if there is none, starts munged,
# slurmctld and slurmd, and waits until `sinfo` shows the node idle. Idempotent: daemons that
# are already running are left alone. Needs root.
set -euo pipefail

CPUS="${SLURM_TEST_CPUS:-2}"
CONF_DIR=/etc/slurm

if [[ "$(id -u)" != 0 ]]; then
  echo "install_slurm.sh: needs root (apt-get, /etc/slurm, daemons)" >&2
  exit 1
fi

if [[ "${1:-}" != "--start-only" ]] && ! command -v slurmctld >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=algoperf-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

if [[ ! -s /etc/munge/munge.key ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key

pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd -N localhost

for _ in $(seq 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "install_slurm.sh: one-node Slurm up: $(sinfo -h -o '%P %D %T %C')"
    exit 0
  fi
  sleep 1
done
echo "install_slurm.sh: Slurm did not come up; last log lines:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
