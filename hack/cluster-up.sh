#!/usr/bin/env bash
# Starts the local single-node Kubernetes cluster as host processes, the way
# Kubernetes' own local-up-cluster does: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd + runc, kubelet, CNI bridge networking and kube-proxy
# (iptables mode).
#
# Idempotent: when every component is running and the API server is ready, it says
# so and exits. Anything else (a half-started cluster, or one whose processes were
# killed without cleanup) is torn down with hack/cluster-down.sh and started afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh

[[ $EUID -eq 0 ]] || die "the local cluster runs a kubelet and changes iptables: run as root"

pid_alive() { [[ -f "$RUN_DIR/$1.pid" ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# Healthy: every component runs and the API server is ready. The admin kubeconfig lives with
# the machine-wide state, so another checkout finds a cluster that this one did not start.
cluster_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_alive "$c" || return 1; done
  [[ -f "$STATE_DIR/conf/admin.kubeconfig" ]] || return 1
  [[ -x "$CLUSTER_DIR/bin/kubectl" ]] || bash hack/build-binaries.sh >/dev/null 2>&1 || return 1
  "$CLUSTER_DIR/bin/kubectl" --kubeconfig "$STATE_DIR/conf/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1
}

if cluster_healthy; then
  mkdir -p "$CLUSTER_DIR/logs"
  cp "$STATE_DIR/conf/admin.kubeconfig" "$CLUSTER_DIR/kubeconfig"
  # Binaries a running cluster does not use (the bench's peer, kstatus) may still be missing in this checkout.
  [[ -x "$CLUSTER_DIR/bin/rollouts-controller" && -d "$CLUSTER_DIR/argo-rollouts/crds" && -x "$CLUSTER_DIR/bin/kstatus" ]] ||
    bash hack/build-binaries.sh
  info "the local cluster is already running (kubeconfig: .cluster/kubeconfig); nothing to do"
  exit 0
fi

t_start=$SECONDS
bash hack/install-deps.sh
bash hack/build-binaries.sh

if compgen -G "$RUN_DIR/*.pid" >/dev/null || [[ -d "$STATE_DIR" ]]; then
  step "cleaning up what an earlier cluster left behind"
  bash hack/cluster-down.sh --quiet
fi

BIN="$CLUSTER_DIR/bin"
PKI="$STATE_DIR/pki"
CONF="$STATE_DIR/conf"
LOGS="$CLUSTER_DIR/logs"
mkdir -p "$PKI" "$CONF" "$LOGS" "$RUN_DIR" "$STATE_DIR"/{etcd,kubelet,cni/net.d,cni/networks,containerd}

# start NAME CMD...: runs CMD detached, logs to .cluster/logs/NAME.log, pid in $RUN_DIR.
start() {
  local name="$1"; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds; on timeout shows the log tail.
wait_for() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$name"; then
      log_tail "$name"; die "$name exited while starting (log: .cluster/logs/$name.log)"
    fi
    if ((SECONDS > deadline)); then
      log_tail "$name"; die "$name not ready after ${timeout}s (log: .cluster/logs/$name.log)"
    fi
    sleep 0.5
  done
  info "$name is up"
}

# --- host networking ------------------------------------------------------------
step "preparing host networking (pod range $POD_CIDR, service range $SERVICE_CIDR)"
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1
sysctl -qw net.bridge.bridge-nf-call-ip6tables=1 || true
# The pod bridge exists before the API server starts, so that its gateway address is
# a stable advertise address that pods reach (the CNI bridge plugin adopts it).
ip link add "$POD_BRIDGE" type bridge 2>/dev/null || true
ip addr replace "$POD_GATEWAY/16" dev "$POD_BRIDGE"
ip link set "$POD_BRIDGE" up
# An empty bridge takes the Service range: a Service IP that kube-proxy did not
# translate dies here instead of leaving by the default route.
ip link add "$SERVICE_BRIDGE" type bridge 2>/dev/null || true
ip link set "$SERVICE_BRIDGE" up
ip route replace "$SERVICE_CIDR" dev "$SERVICE_BRIDGE"
bash hack/netguard.sh install

# --- certificates -----------------------------------------------------------------
step "issuing certificates"
ext_ip="$(ip -o -4 addr show "$(external_interface)" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')"
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
openssl_quiet req -x509 -new -key "$PKI/ca.key" -subj "/CN=zdr-local-ca" -days 3650 -out "$PKI/ca.crt"
# issue NAME CN [O] [SANS]
issue() {
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subj="/CN=$2"
  [[ -n "$org" ]] && subj="/O=$org/CN=$cn"
  openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key"
  openssl_quiet req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$sans" ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$PKI/$name.ext"
  openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
}
svc_ip="${SERVICE_CIDR%/*}"; svc_ip="${svc_ip%.*}.1"
issue apiserver kube-apiserver "" \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$POD_GATEWAY,IP:$svc_ip${ext_ip:+,IP:$ext_ip}"
issue kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$POD_GATEWAY"
issue admin kubernetes-admin system:masters
issue apiserver-kubelet-client kube-apiserver
issue controller-manager system:kube-controller-manager
issue scheduler system:kube-scheduler
issue kubelet "system:node:$NODE_NAME" system:nodes
issue kube-proxy system:kube-proxy
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key"
openssl_quiet ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

write_kubeconfig() {
  local file="$1" user="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zdr-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$user.crt")
    client-key-data: $(base64 -w0 <"$PKI/$user.key")
contexts:
- name: zdr-local
  context: {cluster: zdr-local, user: $user}
current-context: zdr-local
EOF
}
for u in admin controller-manager scheduler kubelet kube-proxy; do write_kubeconfig "$CONF/$u.kubeconfig" "$u"; done
cp "$CONF/admin.kubeconfig" "$CLUSTER_DIR/kubeconfig"

# --- control plane ----------------------------------------------------------------
step "starting etcd"
start etcd "$BIN/etcd" --name zdr --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster zdr=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn \
  --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 60 curl -fsS http://127.0.0.1:2381/health

step "starting kube-apiserver"
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$POD_GATEWAY" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --enable-admission-plugins NodeRestriction \
  --profiling=false --v=1
wait_for kube-apiserver 120 kubectl get --raw /readyz

step "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$CONF/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CONF/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$CONF/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" \
  --controllers '*,-nodeipam,-cloud-node-lifecycle' --v=1
cat >"$CONF/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: $CONF/scheduler.kubeconfig}
leaderElection: {leaderElect: false}
EOF
start kube-scheduler "$BIN/kube-scheduler" --config "$CONF/scheduler.yaml" \
  --authentication-kubeconfig "$CONF/scheduler.kubeconfig" \
  --authorization-kubeconfig "$CONF/scheduler.kubeconfig" --bind-address 127.0.0.1 --v=1
wait_for kube-controller-manager 60 curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 curl -fsSk https://127.0.0.1:10259/healthz
# The API server reaches the kubelet (logs, exec) as user kube-apiserver.
kubectl create clusterrolebinding zdr:apiserver-kubelet-admin --clusterrole system:kubelet-api-admin \
  --user kube-apiserver >/dev/null

# --- node -------------------------------------------------------------------------
step "starting containerd"
cat >"$STATE_DIR/cni/net.d/10-zdr.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "zdr",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE_DIR/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "externalSetMarkChain": "KUBE-MARK-MASQ"}
  ]
}
EOF
cat >"$CONF/containerd.toml" <<EOF
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd"
[grpc]
  address = "$CONTAINERD_ADDRESS"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "zdr.local/pause:3.10"
  # root here lacks CAP_SYS_RESOURCE and cannot lower an OOM score (the pause container's
  # default is -998): keep every container's score at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd/opt"
EOF
start containerd containerd --config "$CONF/containerd.toml"
wait_for containerd 60 ctr --address "$CONTAINERD_ADDRESS" version
bash hack/images.sh

step "starting kubelet"
cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $POD_GATEWAY
port: 10250
readOnlyPort: 0
containerRuntimeEndpoint: unix://$CONTAINERD_ADDRESS
cgroupDriver: cgroupfs
cgroupsPerQOS: true
failSwapOn: false
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: ""
# A small, busy disk must not evict the test pods or collect the imported images.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
podLogsDir: $STATE_DIR/pod-logs
nodeStatusReportFrequency: 10s
syncFrequency: 10s
EOF
start kubelet "$BIN/kubelet" --config "$CONF/kubelet.yaml" --kubeconfig "$CONF/kubelet.kubeconfig" \
  --root-dir "$STATE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$POD_GATEWAY" --v=1
node_ready() { [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; }
wait_for kubelet 120 node_ready

step "starting kube-proxy (iptables mode)"
cat >"$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CONF/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {minSyncPeriod: 1s, syncPeriod: 30s}
EOF
start kube-proxy "$BIN/kube-proxy" --config "$CONF/kube-proxy.yaml" --v=2
wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
# Wait until the default ServiceAccount exists, so pods can be created right away.
wait_for kube-controller-manager 60 kubectl -n default get serviceaccount default

step "cluster ready in $((SECONDS - t_start))s: export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
