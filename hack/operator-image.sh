#!/usr/bin/env bash
# Builds the operator's image, zdr.local/zdr-operator:<version in pyproject.toml>, without a
# container engine, as the OCI archive .cluster/images/zdr-operator.oci.tar, and imports it
# into containerd's k8s.io namespace when the local cluster's containerd runs.
#
#   hack/operator-image.sh [--force] [--build-only] [--verify-reproducible] [--relock]
#
#   --force                rebuild, and import again, even when nothing changed
#   --build-only           write the archive, do not import it
#   --verify-reproducible  build a second time from a clean staging directory elsewhere
#                          and fail unless both archives are identical
#   --relock               pin the Debian packages' current versions and the wheels at the
#                          versions in .venv into hack/operator-image/, then build
#
# Environment: CONTAINERD_ADDRESS (socket; default the cluster's), ZDR_OPERATOR_IMAGE
# (image name), ZDR_CACHE (downloads and staging, default ~/.cache/zdr).
#
# The root filesystem is put together the way distroless images are: Python 3.11 and the
# shared libraries that it and the wheels load, extracted from Debian 12 .debs with dpkg-deb
# (no shell, no apt, no dpkg database; /var/lib/dpkg/status.d names the packages for image
# scanners), then zdr's wheel and its dependencies' binary wheels, byte-compiled with the
# image's own interpreter into hash-based .pyc files. Every version and hash comes from
# hack/operator-image/, so the same inputs give the same digest; when the inputs (those
# files, the sources, this script, mkimage.py) have not changed, the archive is reused.
set -euo pipefail
shopt -s inherit_errexit
requested_address="${CONTAINERD_ADDRESS:-}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ZDR_ROOT"
umask 022

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

force=0
import=1
verify=0
relock=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --build-only) import=0 ;;
    --verify-reproducible) verify=1 ;;
    --relock) relock=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

address="${requested_address:-${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}}"
py="$ZDR_ROOT/.venv/bin/python"
[[ -x "$py" ]] || die "no $py: run make venv first"
[[ "$(dpkg --print-architecture)" == amd64 ]] || die "the image is linux/amd64; build it on an amd64 Debian"
lock_dir=hack/operator-image
cache="$ZDR_CACHE/operator-image"
archive="$CLUSTER_DIR/images/zdr-operator.oci.tar"
stamp="$archive.inputs"

# What goes into the image besides the Debian packages and wheels, and what builds it.
source_paths=(pyproject.toml README.md operator)
build_paths=(hack/operator-image.sh hack/mkimage.py hack/operator-image)

# The image's Debian packages. Every library is here because an ELF file in the image
# loads it; the build fails if a dependency resolves outside the image.
debs=(
  python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
  libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libssl3 libffi8 libbz2-1.0 liblzma5 libuuid1
  base-files # for /etc/os-release and /etc/debian_version only
)
# Standard library parts left out: tests and tools, and the extension modules whose
# libraries (sqlite, gdbm and Berkeley DB, ncurses, readline, NIS, libcrypt) are not in.
stdlib_drop=(test idlelib tkinter turtledemo lib2to3 ensurepip pydoc_data __phello__ sqlite3 curses crypt.py)
dynload_drop=(_ctypes_test _test* _xxtestfuzz xxlimited xxlimited_35
  _sqlite3 _dbm _gdbm _curses _curses_panel readline nis _crypt)

# Wheels for CPython 3.11 on glibc 2.36 (Debian 12), x86-64; binary wheels only.
platform_args=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311)
for minor in $(seq 36 -1 5); do platform_args+=(--platform "manylinux_2_${minor}_x86_64"); done
platform_args+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

{ read -r version && read -r description && read -r license; } < <("$py" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
lic = project.get("license", "")
lic = lic.get("text", "") if isinstance(lic, dict) else lic
for value in (project["version"], project.get("description", ""), lic):
    print(" ".join(value.split()))
EOF
)
image="${ZDR_OPERATOR_IMAGE:-zdr.local/zdr-operator:$version}"

# The commit that last changed an input (suffixed -dirty when the work tree differs from
# it) and its time, which every file in the image carries; so a commit elsewhere in the
# repository does not change the image.
revision=""
epoch="${SOURCE_DATE_EPOCH:-0}"
source_url=""
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  read -r revision commit_time < <(git log -1 --format='%H %ct' -- "${source_paths[@]}" "${build_paths[@]}") || true
  epoch="${SOURCE_DATE_EPOCH:-${commit_time:-0}}"
  if [[ -n "$(git status --porcelain -- "${source_paths[@]}" "${build_paths[@]}")" ]]; then
    revision+="-dirty"
  fi
  origin="$(git remote get-url origin 2>/dev/null || true)"
  [[ "$origin" == https://* ]] && source_url="$(sed -E 's#^https://[^/@]*@#https://#' <<<"$origin")"
fi

# input_files PATH...: the files under PATHs that git tracks or would track, sorted.
input_files() {
  if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -- "$@"
  else
    find "$@" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*'
  fi | LC_ALL=C sort -u | while IFS= read -r f; do [[ -f "$f" ]] && printf '%s\n' "$f"; done
}

inputs_hash() {
  {
    printf '%s\n' "$image" "$revision" "$epoch" "$source_url"
    input_files "${source_paths[@]}" "${build_paths[@]}" | xargs -d '\n' sha256sum
  } | sha256sum | cut -d' ' -f1
}

# pip_pinned ARGS: the pip pinned in build-requirements.txt, without the user's pip
# configuration (every use is offline, from local wheels).
pip_pinned() {
  local unset=() v
  for v in $(compgen -e); do [[ "$v" == PIP_* ]] && unset+=(-u "$v"); done
  env "${unset[@]}" PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$py" "$pinned_pip/pip" "$@"
}

# image_python ROOTFS ARGS: the image's interpreter, run on the host through the image's
# own dynamic loader and libraries.
image_python() {
  local rootfs="$1"
  shift
  env -i PYTHONHOME="$rootfs/usr" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
    "$rootfs/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --inhibit-cache \
    --library-path "$rootfs/lib/x86_64-linux-gnu:$rootfs/usr/lib/x86_64-linux-gnu" \
    "$rootfs/usr/bin/python3.11" "$@"
}

# lock_names FILE: the names of the wheels a requirements file pins, normalized, sorted.
lock_names() { grep -v '^#' "$1" | sed -E 's/[= ].*//; s/[-_.]+/-/g' | tr '[:upper:]' '[:lower:]' | LC_ALL=C sort; }

relock() {
  # shellcheck disable=SC1091
  [[ "$(. /etc/os-release && echo "$VERSION_CODENAME")" == bookworm ]] || die "--relock needs Debian 12 (bookworm)"
  step "pinning Debian packages (apt-get update)"
  apt-get update -qq
  local p tmp
  {
    echo "# The operator image's Debian 12 (bookworm, amd64) packages: name, version, SHA-256."
    echo "# Written by hack/operator-image.sh --relock; the build downloads exactly these."
    for p in "${debs[@]}"; do
      apt-cache show --no-all-versions "$p:amd64" |
        awk -v p="$p" '/^Version: / {v = $2} /^SHA256: / {s = $2} END {if (!v || !s) exit 1; print p, v, s}' ||
        die "apt-cache knows no $p"
    done
  } >"$lock_dir/debian.lock.tmp"
  mv "$lock_dir/debian.lock.tmp" "$lock_dir/debian.lock"
  info "$(grep -vc '^#' "$lock_dir/debian.lock") packages in $lock_dir/debian.lock"

  step "pinning wheels (pyproject.toml's dependencies at .venv's versions)"
  tmp="$(mktemp -d)"
  "$py" -m pip freeze --exclude-editable >"$tmp/venv.txt"
  local runtime=() build=()
  mapfile -t runtime < <("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")')
  mapfile -t build < <("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")')
  "$py" -m pip download -q "${platform_args[@]}" -c "$tmp/venv.txt" -d "$tmp/run" "${runtime[@]}"
  "$py" -m pip download -q "${platform_args[@]}" -d "$tmp/build" "pip==$("$py" -m pip --version | cut -d' ' -f2)" "${build[@]}"
  write_requirements "$tmp/run" "The operator image's wheels (CPython 3.11, manylinux x86-64): pyproject.toml's
# dependencies at the versions installed in .venv, which the tests ran against." >"$lock_dir/requirements.txt"
  write_requirements "$tmp/build" "What builds zdr's wheel and installs the image's wheels: pip (.venv's version)
# and pyproject.toml's build-system.requires." >"$lock_dir/build-requirements.txt"
  rm -rf "$tmp"
  info "$(grep -vc '^#' "$lock_dir/requirements.txt") wheels in $lock_dir/requirements.txt"
}

# write_requirements DIR HEADER: a hash-pinned requirements file for the wheels in DIR.
write_requirements() {
  "$py" - "$@" <<'EOF'
import hashlib, re, sys
from pathlib import Path
print("# " + sys.argv[2])
print("# Written by hack/operator-image.sh --relock.")
lines = []
for wheel in Path(sys.argv[1]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    name = re.sub(r"[-_.]+", "-", name).lower()
    lines.append(f"{name}=={version} --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}")
print(*sorted(lines, key=lambda line: line.split("==")[0]), sep="\n")
EOF
}

# fetch_debs: every package of debian.lock into the cache, checked against its hash.
fetch_debs() {
  [[ "$(grep -v '^#' "$lock_dir/debian.lock" | cut -d' ' -f1 | LC_ALL=C sort | tr '\n' ' ')" == "$(printf '%s\n' "${debs[@]}" | LC_ALL=C sort | tr '\n' ' ')" ]] ||
    die "$lock_dir/debian.lock does not list the packages this script installs: run $0 --relock"
  mkdir -p "$cache/debs"
  local pkg ver sha file tmp="$cache/debs/.download" updated=0
  while read -r pkg ver sha; do
    file="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
    [[ -f "$file" ]] && sha256sum -c --status <<<"$sha  $file" && continue
    info "downloading $pkg $ver"
    rm -rf "$tmp" && mkdir -p "$tmp"
    if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:amd64=$ver" 2>/dev/null); then
      if ((updated == 0)); then
        info "apt-get update"
        apt-get update -qq
        updated=1
      fi
      (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:amd64=$ver") ||
        die "$pkg $ver is not on the Debian mirror (a newer version replaced it): run $0 --relock and commit $lock_dir/"
    fi
    sha256sum -c --status <<<"$sha  $(echo "$tmp"/*.deb)" || die "$pkg $ver: SHA-256 differs from $lock_dir/debian.lock"
    mv "$tmp"/*.deb "$file"
  done < <(grep -v '^#' "$lock_dir/debian.lock")
  rm -rf "$tmp"
}

# fetch_wheels LOCK DEST: the wheels LOCK pins, into DEST, from the cache (downloaded there
# first when missing). pip checks every hash.
fetch_wheels() {
  local lock="$1" dest="$2"
  mkdir -p "$cache/wheels" "$dest"
  local args=(download -q --no-deps "${platform_args[@]}" --require-hashes -r "$lock")
  if ! "$py" -m pip "${args[@]}" --no-index --find-links "$cache/wheels" -d "$dest" >/dev/null 2>&1; then
    info "downloading the wheels of ${lock#"$ZDR_ROOT"/}"
    "$py" -m pip "${args[@]}" -d "$cache/wheels" ||
      die "cannot fetch the wheels $lock pins: run $0 --relock if PyPI lost one"
    "$py" -m pip "${args[@]}" --no-index --find-links "$cache/wheels" -d "$dest" >/dev/null
  fi
}

# check_elf ROOTFS: every ELF file's libraries resolve inside ROOTFS.
check_elf() {
  local rootfs="$1" f line bad=0
  while IFS= read -r -d '' f; do
    [[ "$(head -c 4 "$f" | tr -d '\0')" == $'\x7fELF' ]] || continue
    while IFS= read -r line; do
      if [[ "$line" == *"not found"* || ("$line" == *" => /"* && "$line" != *" => $rootfs/"*) ]]; then
        info "${f#"$rootfs"}: ${line//$'\t'/} (not in the image)"
        bad=1
      fi
    done < <("$rootfs/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --inhibit-cache \
      --library-path "$rootfs/lib/x86_64-linux-gnu:$rootfs/usr/lib/x86_64-linux-gnu" --list "$f" 2>&1)
  done < <(find "$rootfs" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0)
  ((bad == 0)) || die "shared libraries missing from the image: add their Debian packages to debs"
}

# build STAGE OUT: builds the image in the staging directory STAGE (emptied first), writes
# the archive OUT and sets built_digest.
build() {
  local stage="$1" out="$2"
  local rootfs="$stage/rootfs"
  local site="$rootfs/usr/lib/python3/dist-packages" stdlib="$rootfs/usr/lib/python3.11"
  rm -rf "$stage"
  mkdir -p "$stage" "$rootfs/var/lib/dpkg/status.d"

  step "unpacking Debian packages (dpkg-deb -x)"
  local pkg ver sha deb
  while read -r pkg ver sha; do
    deb="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
    if [[ "$pkg" == base-files ]]; then
      dpkg-deb -x "$deb" "$stage/base-files"
    else
      dpkg-deb -x "$deb" "$rootfs"
    fi
    dpkg-deb -f "$deb" >"$rootfs/var/lib/dpkg/status.d/$pkg"
  done < <(grep -v '^#' "$lock_dir/debian.lock")
  cp "$stage/base-files/usr/lib/os-release" "$rootfs/usr/lib/os-release"
  cp "$stage/base-files/etc/debian_version" "$rootfs/etc/debian_version"
  ln -s ../usr/lib/os-release "$rootfs/etc/os-release"

  step "trimming what the operator does not run"
  rm -rf "${rootfs:?}"/{bin,sbin,usr/sbin,usr/libexec,usr/share,usr/lib/binfmt.d} \
    "$rootfs"/usr/lib/x86_64-linux-gnu/{gconv,audit}
  find "$rootfs/usr/bin" -mindepth 1 ! -name python3.11 -delete
  ln -s python3.11 "$rootfs/usr/bin/python3"
  local m
  for m in "${stdlib_drop[@]}"; do rm -rf "${stdlib:?}/$m"; done
  # shellcheck disable=SC2086 # $m may be a pattern (_test*)
  for m in "${dynload_drop[@]}"; do rm -f "$stdlib/lib-dynload/"$m.cpython-311-x86_64-linux-gnu.so; done
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
    >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"

  step "building zdr's wheel"
  fetch_wheels "$ZDR_ROOT/$lock_dir/build-requirements.txt" "$stage/build-wheels"
  pinned_pip="$(echo "$stage"/build-wheels/pip-*.whl)"
  mkdir -p "$stage/src"
  input_files "${source_paths[@]}" | xargs -d '\n' cp --parents -t "$stage/src"
  pip_pinned wheel -q --no-deps --no-index --find-links "$stage/build-wheels" -w "$stage/wheels" "$stage/src"

  step "installing zdr and its dependencies' wheels"
  fetch_wheels "$ZDR_ROOT/$lock_dir/requirements.txt" "$stage/wheels"
  pip_pinned install -q --no-index --find-links "$stage/wheels" "${platform_args[@]}" \
    --target "$site" --no-compile --no-warn-script-location "zdr==$version"
  rm -rf "${site:?}/bin"
  # The kubernetes wheel carries a second, asyncio copy of its whole client (kubernetes/aio:
  # 65 MB with its .pyc, 29% of the image); zdr uses the synchronous client and Kopf its
  # own aiohttp one.
  if grep -rqE 'kubernetes\.aio|from kubernetes import .*\baio\b' operator; then
    die "operator/ uses kubernetes.aio, which this script leaves out of the image"
  fi
  rm -rf "$site/kubernetes/aio"
  local installed wanted
  installed="$(find "$site" -maxdepth 1 -name '*.dist-info' -printf '%f\n' |
    sed -E 's/-[^-]+\.dist-info$//; s/[-_.]+/-/g' | tr '[:upper:]' '[:lower:]' | LC_ALL=C sort)"
  wanted="$({ echo zdr; lock_names "$lock_dir/requirements.txt"; } | LC_ALL=C sort)"
  [[ "$installed" == "$wanted" ]] ||
    die "the installed wheels are not the ones $lock_dir/requirements.txt pins: run $0 --relock
$(diff <(echo "$wanted") <(echo "$installed") || true)"

  step "byte-compiling with the image's interpreter (hash-based .pyc)"
  image_python "$rootfs" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$rootfs" -p / \
    "$stdlib" "$site" >"$stage/compileall.log" 2>&1 || { tail -n 20 "$stage/compileall.log" >&2; die "compileall failed"; }

  step "checking the root filesystem"
  check_elf "$rootfs"
  local shells
  shells="$(cd "$rootfs" && find . \( -type f -o -type l \) \( -name sh -o -name bash -o -name dash -o -name busybox \))"
  [[ -z "$shells" ]] || die "a shell in the image: $shells"
  (cd "$stage" && image_python "$rootfs" -P -c "$import_check" | sed 's/^/    /' >&2) ||
    die "the image's interpreter cannot import the operator"

  step "writing the image"
  local labels=(
    --label "org.opencontainers.image.title=zdr-operator"
    --label "org.opencontainers.image.description=$description"
    --label "org.opencontainers.image.version=$version"
  )
  [[ -n "$revision" ]] && labels+=(--label "org.opencontainers.image.revision=$revision")
  [[ -n "$source_url" ]] && labels+=(--label "org.opencontainers.image.source=$source_url")
  [[ -n "$license" ]] && labels+=(--label "org.opencontainers.image.licenses=$license")
  built_digest="$("$py" hack/mkimage.py --name "$image" --out "$out" --mtime "$epoch" --tree "$rootfs:/" \
    --dir /home/nonroot:0755:65532:65532 --workdir /home/nonroot --user 65532:65532 \
    --entrypoint '["/usr/bin/python3.11", "-m"]' \
    --cmd '["kopf", "run", "--standalone", "--all-namespaces", "-m", "zdr.handlers"]' \
    --env PYTHONUTF8=1 --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
    --stop-signal SIGTERM "${labels[@]}")"
}

# Run by the image's interpreter: on the host before the image is written, and in a
# container after the import (there also checking the user and that no shell exists).
import_check='import kopf, kubernetes, pydantic, structlog, prometheus_client, zdr.handlers
print("imports: ok")'
container_check="$import_check"'
import os
shells = [p for p in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/bin/dash") if os.path.lexists(p)]
assert not shells, shells
print("no shell; uid", os.getuid(), "gid", os.getgid())'

t0=$SECONDS
if ((relock)); then
  relock
fi

hash="$(inputs_hash)"
digest=""
if ((force == 0 && verify == 0)) && [[ -f "$archive" && -f "$stamp" ]]; then
  read -r stamped_hash stamped_digest layer_size <"$stamp"
  [[ "$stamped_hash" == "$hash" ]] && digest="$stamped_digest"
fi

if [[ -n "$digest" ]]; then
  step "operator image unchanged"
else
  step "downloading Debian packages and wheels (cached in ${cache/#"$HOME"/\~})"
  fetch_debs
  rm -f "$stamp"
  build "$cache/stage" "$archive"
  digest="$built_digest"
  if ((verify)); then
    step "building again elsewhere, from a clean staging directory"
    build "$cache/stage-again" "$cache/again.oci.tar"
    if [[ "$built_digest" != "$digest" ]] || ! cmp -s "$archive" "$cache/again.oci.tar"; then
      die "not reproducible: $digest, then $built_digest (archives kept in ${cache/#"$HOME"/\~})"
    fi
    info "reproducible: both builds are $digest"
    rm -rf "$cache/stage-again" "$cache/again.oci.tar"
  fi
  rm -rf "$cache/stage"
  layer_size="$("$py" - "$archive" <<'EOF'
import gzip, json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    def blob(digest):
        return tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()
    index = json.loads(tar.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    print(sum(len(gzip.decompress(blob(layer["digest"]))) for layer in manifest["layers"]))
EOF
)"
  echo "$hash $digest $layer_size" >"$stamp"
fi
info "$image  $digest"
info "${archive#"$ZDR_ROOT"/}: $(numfmt --to=iec-i --suffix=B "$(stat -c %s "$archive")"), \
layer $(numfmt --to=iec-i --suffix=B "$layer_size") uncompressed ($((SECONDS - t0))s)"

if ((import == 0)); then
  exit 0
fi
if [[ ! -S "$address" ]]; then
  info "no containerd socket at $address (make cluster starts it): not imported"
  exit 0
fi

ctr_k8s() { ctr --address "$address" --namespace k8s.io "$@"; }
present_digest() {
  ctr_k8s images check 2>/dev/null |
    awk -v n="$1" '$1 == n && $4 == "complete" && $NF == "true" {print $3; exit}'
}

if ((force == 0)) && [[ "$(present_digest "$image")" == "$digest" ]]; then
  info "$image: already in containerd"
  exit 0
fi
step "importing into containerd ($address, namespace k8s.io)"
t1=$SECONDS
ctr_k8s images import "$archive" >/dev/null
got="$(present_digest "$image")"
[[ "$got" == "$digest" ]] || die "$image: containerd holds '${got:-nothing}' after import, want $digest"
info "$image: imported ($((SECONDS - t1))s)"

step "running the image (ctr run, read-only root filesystem)"
ctr_k8s run --rm --read-only "$image" "zdr-image-check-$$" /usr/bin/python3.11 -c "$container_check" |
  sed 's/^/    /' >&2
ctr_k8s run --rm --read-only "$image" "zdr-image-check-$$" /usr/bin/python3.11 -m kopf run --help >/dev/null ||
  die "python3.11 -m kopf run --help failed in the image"
info "python3.11 -m kopf run --help: ok"
