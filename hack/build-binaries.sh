#!/usr/bin/env bash
# Builds the binaries of the local test cluster from the Go module proxy and caches
# them by version under ZDR_CACHE (default ~/.cache/zdr): Kubernetes (wrapper module
# in hack/gomod/kubernetes) and etcd (wrapper module in hack/gomod/etcd).
# A warm cache makes this a no-op; a cold build prints one line per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh

k8s_version="$(awk '/^require k8s.io\/kubernetes/ {print $3}' hack/gomod/kubernetes/go.mod)"
etcd_version="$(awk '/^require go.etcd.io\/etcd\/server\/v3 / {print $3}' hack/gomod/etcd/go.mod)"
k8s_dir="$ZDR_CACHE/kubernetes/$k8s_version/bin"
etcd_dir="$ZDR_CACHE/etcd/$etcd_version/bin"
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

mkdir -p "$k8s_dir" "$etcd_dir"
if [[ ! -x "$etcd_dir/etcd" ]]; then
  step "building etcd $etcd_version"
  t0=$SECONDS
  (cd hack/gomod/etcd && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$etcd_dir/etcd.tmp" .)
  mv "$etcd_dir/etcd.tmp" "$etcd_dir/etcd"
  info "built etcd in $((SECONDS - t0))s"
fi
for cmd in kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet; do
  build_k8s "$cmd"
done
mkdir -p .cluster/bin
for b in "$k8s_dir"/* "$etcd_dir"/etcd; do ln -sf "$b" ".cluster/bin/$(basename "$b")"; done
info "binaries ready in .cluster/bin (kubernetes $k8s_version, etcd $etcd_version)"
