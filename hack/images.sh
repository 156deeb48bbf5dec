#!/usr/bin/env bash
# Builds the pod sandbox image (zdr.local/pause:3.10, from hack/pause) and the test
# app image (zdr.local/testapp:dev, from testapp/) as OCI archives under
# .cluster/images/ and imports them into containerd's k8s.io namespace.
#
# Images are reproducible (same sources and toolchain, same digest); an image that
# containerd already holds, complete and unpacked, with the built digest is not
# imported again unless --force is given.
#
#   hack/images.sh [--force] [--build-only]
#
# Environment: CONTAINERD_ADDRESS (containerd socket; default the cluster's, else
# /run/containerd/containerd.sock), CONTAINERD_SNAPSHOTTER (unpack target, default
# containerd's), ZDR_PAUSE_IMAGE, ZDR_TESTAPP_IMAGE (image names).
set -euo pipefail
requested_address="${CONTAINERD_ADDRESS:-}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ZDR_ROOT"

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

force=0
import=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --build-only) import=0 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

address="${requested_address:-${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}}"
pause_image="${ZDR_PAUSE_IMAGE:-zdr.local/pause:3.10}"
testapp_image="${ZDR_TESTAPP_IMAGE:-zdr.local/testapp:dev}"
images_dir="$CLUSTER_DIR/images"
bin_dir="$images_dir/bin"
mkdir -p "$bin_dir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOOS=linux GOARCH=amd64

# build_binary MODULE_DIR OUTPUT: a static, stripped, reproducible binary.
build_binary() {
  local dir="$1" out="$2" t0=$SECONDS
  (cd "$dir" && go build -trimpath -buildvcs=false -ldflags '-s -w' -o "$out.tmp" .)
  if [[ -f "$out" ]] && cmp -s "$out.tmp" "$out"; then
    rm -f "$out.tmp"
    info "$(basename "$out"): unchanged ($((SECONDS - t0))s)"
  else
    mv "$out.tmp" "$out"
    info "$(basename "$out"): built, $(du -h "$out" | cut -f1) ($((SECONDS - t0))s)"
  fi
}

ctr_k8s() { ctr --address "$address" --namespace k8s.io "$@"; }

# present_digest NAME: the digest containerd holds for NAME, if its content is
# complete and unpacked for the default platform; empty otherwise.
present_digest() {
  local name="$1"
  ctr_k8s images check 2>/dev/null |
    awk -v n="$name" '$1 == n && $4 == "complete" && $NF == "true" {print $3; exit}'
}

step "building binaries (pause, testapp)"
build_binary hack/pause "$bin_dir/pause"
build_binary testapp "$bin_dir/testapp"

step "building images"
pause_digest="$(python3 hack/mkimage.py --name "$pause_image" --out "$images_dir/pause.tar" \
  --file "$bin_dir/pause:/pause:0755" --entrypoint /pause --user 65535:65535 --quiet)"
info "$pause_image  $pause_digest  $(du -h "$images_dir/pause.tar" | cut -f1)"
testapp_digest="$(python3 hack/mkimage.py --name "$testapp_image" --out "$images_dir/testapp.tar" \
  --file "$bin_dir/testapp:/testapp:0755" --entrypoint /testapp --env PORT=8080 --port 8080 \
  --user 65532:65532 --stop-signal SIGTERM --quiet)"
info "$testapp_image  $testapp_digest  $(du -h "$images_dir/testapp.tar" | cut -f1)"

# kubectl of the cluster's version, for tests of in-cluster API access with a pod's token.
kubectl_image="${ZDR_KUBECTL_IMAGE:-zdr.local/kubectl:dev}"
kubectl_bin="$(readlink -f "$CLUSTER_DIR/bin/kubectl" 2>/dev/null || true)"
images=("$pause_image|$images_dir/pause.tar|$pause_digest" "$testapp_image|$images_dir/testapp.tar|$testapp_digest")
if [[ -x "$kubectl_bin" ]]; then
  kubectl_digest="$(python3 hack/mkimage.py --name "$kubectl_image" --out "$images_dir/kubectl.tar" \
    --file "$kubectl_bin:/kubectl:0755" --entrypoint /kubectl --env HOME=/tmp --user 65532:65532 --quiet)"
  info "$kubectl_image  $kubectl_digest  $(du -h "$images_dir/kubectl.tar" | cut -f1)"
  images+=("$kubectl_image|$images_dir/kubectl.tar|$kubectl_digest")
fi

if [[ "$import" == 0 ]]; then
  info "archives in ${images_dir#"$ZDR_ROOT"/}; not imported (--build-only)"
  exit 0
fi

[[ -S "$address" ]] || die "no containerd socket at $address (start containerd, set CONTAINERD_ADDRESS, or use --build-only)"

step "importing into containerd ($address, namespace k8s.io)"
for pair in "${images[@]}"; do
  IFS='|' read -r name archive digest <<<"$pair"
  if [[ "$force" == 0 && "$(present_digest "$name")" == "$digest" ]]; then
    info "$name: already present ($digest)"
    continue
  fi
  t0=$SECONDS
  ctr_k8s images import "$archive" >/dev/null
  got="$(present_digest "$name")"
  [[ "$got" == "$digest" ]] || die "$name: containerd holds '${got:-nothing}' after import, want $digest"
  info "$name: imported ($digest, $((SECONDS - t0))s)"
done
