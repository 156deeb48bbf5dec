#!/usr/bin/env bash
# Guards the machine's external interface against packets for the cluster's address
# ranges (README "Network safety").
#   install: REJECT the pod and Service ranges leaving by the external interface, in
#            OUTPUT and FORWARD (chain ZDR-GUARD), and count in mangle POSTROUTING
#            (chain ZDR-LEAK) any such packet that would still get out.
#   remove:  delete both chains and their jumps.
#   leaks:   print the number of packets counted by ZDR-LEAK (0 means nothing leaked).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ext="$(external_interface)"
ranges=("$POD_CIDR" "$SERVICE_CIDR")

remove() {
  local chain
  for hook in OUTPUT FORWARD; do
    while iptables -t filter -D "$hook" -j "$GUARD_CHAIN" 2>/dev/null; do :; done
  done
  while iptables -t mangle -D POSTROUTING -j "$LEAK_CHAIN" 2>/dev/null; do :; done
  for chain in "filter $GUARD_CHAIN" "mangle $LEAK_CHAIN"; do
    set -- $chain
    iptables -t "$1" -F "$2" 2>/dev/null || true
    iptables -t "$1" -X "$2" 2>/dev/null || true
  done
}

install() {
  [[ -n "$ext" ]] || { echo "no default route: nothing can leave, no guard needed" >&2; return 0; }
  remove
  iptables -t filter -N "$GUARD_CHAIN"
  iptables -t mangle -N "$LEAK_CHAIN"
  for r in "${ranges[@]}"; do
    iptables -t filter -A "$GUARD_CHAIN" -o "$ext" -d "$r" -m comment --comment "zdr: cluster range must not leave" \
      -j REJECT --reject-with icmp-net-unreachable
    iptables -t mangle -A "$LEAK_CHAIN" -o "$ext" -d "$r" -m comment --comment "zdr: leaked cluster packet" -j RETURN
  done
  iptables -t filter -I OUTPUT 1 -j "$GUARD_CHAIN"
  iptables -t filter -I FORWARD 1 -j "$GUARD_CHAIN"
  iptables -t mangle -I POSTROUTING 1 -j "$LEAK_CHAIN"
}

leaks() {
  iptables -t mangle -L "$LEAK_CHAIN" -n -v -x | awk 'NR > 2 {sum += $1} END {print sum + 0}'
}

case "${1:-}" in
  install) install ;;
  remove) remove ;;
  leaks) leaks ;;
  *) echo "usage: $0 install|remove|leaks" >&2; exit 2 ;;
esac
