#!/usr/bin/env bash
# Builds the binaries of the local test cluster from the Go module proxy and caches
# them by version under ZDR_CACHE (default ~/.cache/zdr): Kubernetes (wrapper module
# in hack/gomod/kubernetes), etcd (wrapper module in hack/gomod/etcd), the vegeta
# load tool the benchmark cross-checks its prober with (wrapper module in hack/gomod/vegeta)
# and the Argo Rollouts controller with its CRDs, the peer the benchmark measures zdr beside
# (wrapper module in hack/gomod/argo-rollouts), and kstatus, the status library Flux waits
# with (sigs.k8s.io/cli-utils, wrapper command in hack/gomod/kstatus), which the GitOps e2e tests ask.
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
argo_version="$(awk '$1 == "github.com/argoproj/argo-rollouts" {print $2} $1 == "require" && $2 == "github.com/argoproj/argo-rollouts" {print $3}' hack/gomod/argo-rollouts/go.mod)"
[[ -n "$argo_version" ]] || die "no github.com/argoproj/argo-rollouts requirement in hack/gomod/argo-rollouts/go.mod"
argo_dir="$ZDR_CACHE/argo-rollouts/$argo_version"
kstatus_version="$(awk '$1 == "require" && $2 == "sigs.k8s.io/cli-utils" {print $3} $1 == "sigs.k8s.io/cli-utils" {print $2}' hack/gomod/kstatus/go.mod)"
[[ -n "$kstatus_version" ]] || die "no sigs.k8s.io/cli-utils requirement in hack/gomod/kstatus/go.mod"
# The command's own source is part of what is cached: a changed main.go builds anew.
kstatus_dir="$ZDR_CACHE/kstatus/$kstatus_version-$(cat hack/gomod/kstatus/main.go hack/gomod/kstatus/go.sum | sha256sum | cut -c1-12)/bin"
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
if [[ ! -x "$argo_dir/bin/rollouts-controller" || ! -d "$argo_dir/crds" ]]; then
  # The peer the benchmark measures zdr beside: the controller and the CRDs of the same module.
  step "building the Argo Rollouts controller $argo_version (cold build: a few minutes)"
  t0=$SECONDS
  mkdir -p "$argo_dir/bin"
  (cd hack/gomod/argo-rollouts && CGO_ENABLED=0 go build \
    -ldflags "-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${argo_version#v}" \
    -o "$argo_dir/bin/rollouts-controller.tmp" github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
  module_dir="$(cd hack/gomod/argo-rollouts && go list -m -f '{{.Dir}}' github.com/argoproj/argo-rollouts)"
  rm -rf "$argo_dir/crds.tmp" && mkdir -p "$argo_dir/crds.tmp"
  cp "$module_dir"/manifests/crds/*-crd.yaml "$argo_dir/crds.tmp/"
  rm -rf "$argo_dir/crds" && mv "$argo_dir/crds.tmp" "$argo_dir/crds"
  mv "$argo_dir/bin/rollouts-controller.tmp" "$argo_dir/bin/rollouts-controller"
  info "built the Argo Rollouts controller in $((SECONDS - t0))s"
fi
if [[ ! -x "$kstatus_dir/kstatus" ]]; then
  step "building kstatus (sigs.k8s.io/cli-utils $kstatus_version)"
  t0=$SECONDS
  mkdir -p "$kstatus_dir"
  (cd hack/gomod/kstatus && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$kstatus_dir/kstatus.tmp" .)
  mv "$kstatus_dir/kstatus.tmp" "$kstatus_dir/kstatus"
  info "built kstatus in $((SECONDS - t0))s"
fi
mkdir -p .cluster/bin .cluster/argo-rollouts
for b in "$k8s_dir"/* "$etcd_dir"/etcd "$vegeta_dir"/vegeta "$argo_dir"/bin/rollouts-controller "$kstatus_dir"/kstatus; do
  ln -sf "$b" ".cluster/bin/$(basename "$b")"
done
ln -sfn "$argo_dir/crds" .cluster/argo-rollouts/crds
info "binaries ready in .cluster/bin (kubernetes $k8s_version, etcd $etcd_version, vegeta $vegeta_version, argo-rollouts $argo_version, kstatus cli-utils $kstatus_version)"
