# tests/deploy/net.sh - the host's network before and after the deployment test's dockerd.
# dockerd leaves the docker0 bridge, its DOCKER* iptables chains and rules, ip_forward=1 and
# a network-namespace mount behind, and sets FORWARD's policy to DROP; net_restore takes away
# exactly those (rules naming DOCKER*, docker0 or a compose br-* bridge; links that were not
# there before; the policy and ip_forward as they were), so rules other programs added
# meanwhile stay, and net_same compares with what net_save saw.

net_snapshot() ( # what is compared: links, forwarding, iptables rules and non-builtin chains
  set +e +o pipefail
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
  for t in filter nat; do
    iptables-save -t "$t" 2>/dev/null | grep -vE '^(#|\*|COMMIT)' |
      grep -vE '^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT ' | sed "s/^/$t: /; s/ \[[0-9:]*\]//"
  done
  true
)

net_save() {
  net_snapshot >"$1/net.before"
  cat /proc/sys/net/ipv4/ip_forward >"$1/ip_forward.before"
  # dockerd sets FORWARD's policy to DROP; no filter table counts as ACCEPT
  local p
  p=$(iptables-save -t filter 2>/dev/null | sed -n 's/^:FORWARD \([A-Z]*\) .*/\1/p')
  echo "${p:-ACCEPT}" >"$1/forward.before"
}

net_restore() {
  local w=$1 l
  # the namespace mount dockerd makes under its exec root
  if [ -d "$w/run/netns" ]; then
    for m in "$w"/run/netns/*; do [ -e "$m" ] && umount "$m" 2>/dev/null; done
  fi
  grep -q " $w/" /proc/mounts && awk -v w="$w/" '$2 ~ "^"w {print $2}' /proc/mounts |
    sort -r | xargs -r -n1 umount -l 2>/dev/null
  for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    case "$l" in
      docker0 | br-* | veth*) grep -qx "$l" "$w/net.before" || ip link delete "$l" 2>/dev/null ;;
    esac
  done
  local t
  for t in filter nat; do
    if iptables-save -t "$t" 2>/dev/null | grep -qE 'DOCKER|docker0|br-[0-9a-f]{12}'; then
      iptables-save -t "$t" | grep -vE 'DOCKER|docker0|br-[0-9a-f]{12}' | iptables-restore -T "$t"
    fi
  done
  iptables -P FORWARD "$(cat "$w/forward.before")"
  cat "$w/ip_forward.before" >/proc/sys/net/ipv4/ip_forward
}

net_same() {
  net_snapshot >"$1/net.after"
  diff "$1/net.before" "$1/net.after" >&2
}
