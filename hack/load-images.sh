#!/usr/bin/env bash
# Loads the images the e2e tests run into the cluster under test, from the OCI archives that
# `hack/images.sh --build-only` and `hack/operator-image.sh --build-only` write to
# .cluster/images/: the test app, kubectl, the operator (and the pod sandbox image for the
# local cluster, whose containerd uses it).
#
#   hack/load-images.sh [containerd|kind|registry]     (default: $ZDR_IMAGE_LOADER, else containerd)
#
#   containerd  import into a containerd's k8s.io namespace (CONTAINERD_ADDRESS; default the
#               local cluster's), skipped for an image it already holds with the same digest
#   kind        kind load image-archive ARCHIVE --name "${KIND_CLUSTER_NAME:-kind}"
#   registry    skopeo copy oci-archive:ARCHIVE docker://$ZDR_REGISTRY/NAME:TAG; the tests then
#               run the pushed names: export ZDR_TESTAPP_IMAGE, ZDR_KUBECTL_IMAGE and
#               ZDR_OPERATOR_IMAGE as printed at the end (ZDR_REGISTRY_TLS_VERIFY=false for a
#               plain-HTTP registry)
set -euo pipefail
requested_address="${CONTAINERD_ADDRESS:-}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ZDR_ROOT"

loader="${1:-${ZDR_IMAGE_LOADER:-containerd}}"
address="${requested_address:-${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}}"
images_dir="$CLUSTER_DIR/images"
archives=("$images_dir/testapp.tar" "$images_dir/kubectl.tar" "$images_dir/zdr-operator.oci.tar")
[[ "$loader" == containerd ]] && archives=("$images_dir/pause.tar" "${archives[@]}")
for archive in "${archives[@]}"; do
  [[ -f "$archive" ]] || die "$archive is missing: run hack/images.sh --build-only and hack/operator-image.sh --build-only"
done

# archive_ref ARCHIVE: "NAME DIGEST" of the image an OCI archive holds (its index's first entry).
archive_ref() {
  python3 - "$1" <<'EOF'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    index = json.load(tar.extractfile("index.json"))
entry = index["manifests"][0]
print(entry["annotations"]["io.containerd.image.name"], entry["digest"])
EOF
}

case "$loader" in
  containerd)
    [[ -S "$address" ]] || die "no containerd socket at $address (set CONTAINERD_ADDRESS)"
    step "loading images into containerd ($address)"
    for archive in "${archives[@]}"; do
      read -r name digest < <(archive_ref "$archive")
      held="$(ctr --address "$address" -n k8s.io images check 2>/dev/null |
        awk -v n="$name" '$1 == n && $4 == "complete" && $NF == "true" {print $3; exit}')"
      if [[ "$held" == "$digest" ]]; then
        info "$name: already present ($digest)"
        continue
      fi
      ctr --address "$address" -n k8s.io images import "$archive" >/dev/null
      info "$name: imported ($digest)"
    done
    ;;
  kind)
    command -v kind >/dev/null || die "kind is not on PATH"
    step "loading images into kind cluster ${KIND_CLUSTER_NAME:-kind}"
    for archive in "${archives[@]}"; do
      kind load image-archive "$archive" --name "${KIND_CLUSTER_NAME:-kind}" >&2
      info "$(archive_ref "$archive")"
    done
    ;;
  registry)
    [[ -n "${ZDR_REGISTRY:-}" ]] || die "set ZDR_REGISTRY (e.g. registry.example.com/zdr)"
    command -v skopeo >/dev/null || die "skopeo is not installed (apt-get install skopeo)"
    step "pushing images to $ZDR_REGISTRY"
    exports=()
    for archive in "${archives[@]}"; do
      read -r name digest < <(archive_ref "$archive")
      pushed="$ZDR_REGISTRY/${name#*/}"
      skopeo copy --dest-tls-verify="${ZDR_REGISTRY_TLS_VERIFY:-true}" "oci-archive:$archive" "docker://$pushed" >&2
      info "$pushed ($digest)"
      case "${name#*/}" in
        testapp:*) exports+=("ZDR_TESTAPP_IMAGE=$pushed") ;;
        kubectl:*) exports+=("ZDR_KUBECTL_IMAGE=$pushed") ;;
        zdr-operator:*) exports+=("ZDR_OPERATOR_IMAGE=$pushed") ;;
      esac
    done
    printf 'export %s\n' "${exports[@]}"
    ;;
  *) die "unknown loader '$loader': containerd, kind or registry" ;;
esac
