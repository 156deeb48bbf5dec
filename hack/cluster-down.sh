#!/usr/bin/env bash
# Stops the local cluster and removes everything it set up on the host: processes
# (components, containerd shims, container processes), mounts, pod network
# namespaces, interfaces, routes, iptables chains and the cluster's state. Safe to
# run on a cluster that was killed without any cleanup, and on no cluster at all.
set -uo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh

quiet=0
[[ "${1:-}" == --quiet ]] && quiet=1
say() { ((quiet)) || step "$@"; }

say "stopping the local cluster"
# 1. Components, newest first, by pid file and by binary path (a fresh clone has no
#    pid files of the clone that started them, but the state dir is shared).
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  c="${COMPONENTS[$i]}"
  if [[ -f "$RUN_DIR/$c.pid" ]]; then
    kill -TERM "$(cat "$RUN_DIR/$c.pid")" 2>/dev/null
  fi
done
sleep 1
for c in "${COMPONENTS[@]}"; do
  [[ -f "$RUN_DIR/$c.pid" ]] && kill -KILL "$(cat "$RUN_DIR/$c.pid")" 2>/dev/null
  rm -f "$RUN_DIR/$c.pid"
done
pkill -KILL -f -- "--config $STATE_DIR/conf/" 2>/dev/null
pkill -KILL -f -- "--data-dir $STATE_DIR/etcd" 2>/dev/null
pkill -KILL -f -- "--etcd-servers http://127.0.0.1:2379" 2>/dev/null
pkill -KILL -f -- "--kubeconfig $STATE_DIR/conf/" 2>/dev/null
# 2. Containers: the shims of our containerd and every process in the pods' cgroups.
pkill -KILL -f -- "-address $CONTAINERD_ADDRESS" 2>/dev/null
for _ in 1 2 3; do
  for procs in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs; do
    [[ -f "$procs" ]] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$procs"
  done
  sleep 0.3
done
for root in /sys/fs/cgroup/*/kubepods; do
  [[ -d "$root" ]] && find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 3. Mounts under the cluster's state, innermost first, then pod network namespaces.
while read -r target; do
  umount -l "$target" 2>/dev/null
done < <(awk -v a="$STATE_DIR" -v b="$RUN_DIR" '$2 ~ "^" a || $2 ~ "^" b || $2 ~ "^/run/netns/cni-" {print $2}' /proc/self/mounts | sort -r)
for ns in /run/netns/cni-*; do
  [[ -e "$ns" ]] && { ip netns delete "$(basename "$ns")" 2>/dev/null || rm -f "$ns"; }
done

# 4. Interfaces and routes: the veths attached to the pod bridge, then both bridges.
for veth in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link delete "$veth" 2>/dev/null
done
ip route delete "$SERVICE_CIDR" 2>/dev/null
ip link delete "$POD_BRIDGE" 2>/dev/null
ip link delete "$SERVICE_BRIDGE" 2>/dev/null

# 5. iptables: kube-proxy's (KUBE-*), the CNI plugins' (CNI-*) and our guard chains.
for tool in iptables ip6tables; do
  command -v "$tool-save" >/dev/null || continue
  "$tool-save" | grep -Ev -- '(^:|-A |-j |-g )(KUBE|CNI|ZDR)-' | "$tool-restore" 2>/dev/null \
    || echo "warning: could not clean $tool rules" >&2
done
bash hack/netguard.sh remove 2>/dev/null

# 6. State. Certificates, etcd data, kubelet and containerd state start afresh.
rm -rf "$STATE_DIR" "$RUN_DIR" 2>/dev/null || {
  echo "warning: could not remove all of $STATE_DIR (still mounted?)" >&2
}
say "the local cluster is stopped and cleaned up"
