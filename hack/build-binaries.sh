#!/usr/bin/env bash
# Builds the binaries of the local test cluster from the Go module proxy and caches
# them by version under ZDR_CACHE (default ~/.cache/zdr): Kubernetes (wrapper module
# in hack/gomod/kubernetes), etcd (wrapper module in hack/gomod/etcd) and the vegeta
# load tool the benchmark cross-checks its prober with (wrapper module in hack/gomod/vegeta).
# A warm cache makes this a no-op; a cold build prints one line per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh

k8s_version="$(awk '/^require k8s.io\/kubernetes/ {print $3}' hack/gomod/kubernetes/go.mod)"
etcd_version="$(awk '/^require go.etcd.io\/etcd\/server\/v3 / {print $3}' hack/gomod/etcd/go.mod)"
k8s_dir="$ZDR_CACHE/kubernetes/$k8s_version/bin"
etcd_dir="$ZDR_CACHE/etcd/$etcd_version/bin"
vegeta_version="$(awk '$1 == "require" && $2 == "github.com/tsenart/vegeta/v12" {print $3}' hack/gomod/vegeta/go.mod)"
[[ -n "$vegeta_version" ]] || die "no github.com/tsenart/vegeta/v12 requirement in hack/gomod/vegeta/go.mod"
vegeta_dir="$ZDR_CACHE/vegeta/$vegeta_version/bin"
export GOFLAGS="-mod=mod -trimpath"
export GOTOOLCHAIN=local

build_k8s() {
  local cmd="$1"
  [[ -x "$k8s_dir/$cmd" ]] && return 0
  local minor="${k8s_version#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  step "building $cmd $k8s_version (cold build: several minutes per binary)"
  local t0=$SECONDS
  (cd hack/gomod/kubernetes && CGO_ENABLED=0 go build -ldflags "$ld" -o "$k8s_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
  mv "$k8s_dir/$cmd.tmp" "$k8s_dir/$cmd"
  info "built $cmd in $((SECONDS - t0))s"
}

mkdir -p "$k8s_dir" "$etcd_dir" "$vegeta_dir"
if [[ ! -x "$etcd_dir/etcd" ]]; then
  step "building etcd $etcd_version"
  t0=$SECONDS
  (cd hack/gomod/etcd && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$etcd_dir/etcd.tmp" .)
  mv "$etcd_dir/etcd.tmp" "$etcd_dir/etcd"
  info "built etcd in $((SECONDS - t0))s"
fi
if [[ ! -x "$vegeta_dir/vegeta" ]]; then
  step "building vegeta $vegeta_version"
  t0=$SECONDS
  # vegeta's main package is the module root; the wrapper's go.mod pins it (tool directive).
  (cd hack/gomod/vegeta && CGO_ENABLED=0 go build -ldflags "-s -w -X main.Version=$vegeta_version" \
    -o "$vegeta_dir/vegeta.tmp" github.com/tsenart/vegeta/v12)
  mv "$vegeta_dir/vegeta.tmp" "$vegeta_dir/vegeta"
  info "built vegeta in $((SECONDS - t0))s"
fi
for cmd in kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet; do
  build_k8s "$cmd"
done
mkdir -p .cluster/bin
for b in "$k8s_dir"/* "$etcd_dir"/etcd "$vegeta_dir"/vegeta; do ln -sf "$b" ".cluster/bin/$(basename "$b")"; done
info "binaries ready in .cluster/bin (kubernetes $k8s_version, etcd $etcd_version, vegeta $vegeta_version)"
