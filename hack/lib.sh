# Shared helpers for the hack/ scripts: progress output and common paths.
ZDR_CACHE="${ZDR_CACHE:-$HOME/.cache/zdr}"
ZDR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="$ZDR_ROOT/.cluster"
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
