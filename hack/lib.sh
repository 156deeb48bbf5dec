# Shared helpers for the hack/ scripts: progress output and common paths.
ZDR_CACHE="${ZDR_CACHE:-$HOME/.cache/zdr}"
ZDR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="$ZDR_ROOT/.cluster"
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Machine-wide state of the local cluster. It lives outside any checkout so that
# `make cluster` from a fresh clone finds and cleans what an earlier run left behind.
STATE_DIR="${ZDR_STATE_DIR:-/var/lib/zdr}"
RUN_DIR="${ZDR_RUN_DIR:-/run/zdr}"
CONTAINERD_ADDRESS="$RUN_DIR/containerd/containerd.sock"
export CONTAINERD_ADDRESS

# Address ranges (README "Network safety").
POD_CIDR="10.88.0.0/16"
POD_BRIDGE="zdr0"
POD_GATEWAY="10.88.0.1"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_BRIDGE="zdrsvc0"
NODE_NAME="zdr-node"
APISERVER_PORT=6443
GUARD_CHAIN="ZDR-GUARD"
LEAK_CHAIN="ZDR-LEAK"

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

external_interface() {
  ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}'
}

kubectl() { "$CLUSTER_DIR/bin/kubectl" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }

log_tail() {
  local name="$1" f="$CLUSTER_DIR/logs/$1.log"
  [[ -f "$f" ]] || return 0
  printf -- '--- last lines of %s ---\n' "$f" >&2
  tail -n 25 "$f" >&2
}
