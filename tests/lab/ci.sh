#!/usr/bin/env bash
# Root-only end-to-end tests on real traffic: installs what the namespace lab
# needs on a fresh Debian machine, then runs the Rust tests that drive it.
# Called by .ci/run when it runs as root; runs unattended (no stdin).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "lab-ci: not root, namespace tests skipped"
  exit 0
fi

packages=(openssh-server openssh-client dropbear-bin tcpdump iproute2 ethtool python3 curl git procps passwd
  dnsmasq-base openssl prometheus tcpreplay nmap util-linux adduser dpkg-dev systemd
  tinyproxy dante-server haproxy netcat-openbsd stunnel4 iodine dns2tcp ptunnel-ng iputils-ping)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lab-ci: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# openssh-server's package scripts may start a system sshd; the lab runs its
# own per namespace and does not need it (nor touch it).

# Each test binary runs its part of the lab once (SSH about 7 min, app-layer
# under 1 min, live capture about 1 min, sensor operations about 1.5 min (with the
# af-packet fanout), capture faults about 1 min (lost interface with pcap and af-packet), SYN flood under 1 min, full disk about 1 min,
# idle connections about 15 s, nmap discovery about 30 s, live learning and
# web TLS/basic auth a few seconds each, proxies (CONNECT, SOCKS5, PROXY header) about 35 s,
# SSH and mining inside TLS about 1 min, DNS and ICMP tunnels about 20 s, a sensor
# restart in a live tunnel about 30 s, with pcap and af-packet).
for t in netns_ssh netns_app netns_live netns_sensor netns_capture_faults netns_flood netns_disk \
  netns_web netns_discovery netns_learn netns_webtls netns_proxy netns_tlsshape netns_tunnels \
  netns_restart; do
  echo "lab-ci: EGRESSWATCH_NETNS=1 cargo test --test $t"
  EGRESSWATCH_NETNS=1 cargo test --test "$t" -- --test-threads=1
done

# The Debian package: built with cargo-deb (a debug build of the tool is
# enough and compiles in a fraction of the time), installed, started in a
# namespace as the unit and as the container run it, then purged.
if ! command -v cargo-deb >/dev/null; then
  echo "lab-ci: cargo install cargo-deb"
  cargo install --quiet --debug --locked cargo-deb --version 3.8.0
fi
dist/deb.sh --dev
deb=$(ls target/debian/egresswatch_*.deb | head -n 1)
echo "lab-ci: EGRESSWATCH_NETNS=1 EGRESSWATCH_DEB=$deb cargo test --test netns_deb"
EGRESSWATCH_NETNS=1 EGRESSWATCH_DEB="$deb" cargo test --test netns_deb -- --test-threads=1
