#!/usr/bin/env bash
# Install everything Plexus needs, idempotently: Debian packages, then a virtualenv
# (.venv) with the project and its test tools. Safe to run again; it only does what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-venv iproute2 openvswitch-switch ethtool busybox iputils-ping iperf3 tcpdump
              isc-dhcp-client
              etcd-server graphviz ovn-central ovn-host)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  # Installing openvswitch-switch must not start the system's OVS daemons: the lab
  # runs its own per chassis, and the root namespace stays untouched. A policy-rc.d
  # that refuses service starts is put in place for the install (if none exists).
  temp_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    temp_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$temp_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  # etcd-server enables a system etcd (127.0.0.1:2379) for boot. Plexus runs its own
  # members on free loopback ports, so one we just installed must not run: disable its
  # unit, and stop it if it started anyway -- through its own unit or init script, and
  # only when its pidfile names the package's binary.
  if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
    if command -v systemctl >/dev/null; then
      $SUDO systemctl disable --quiet etcd.service 2>/dev/null || true
      if [ -d /run/systemd/system ] && systemctl is-active --quiet etcd.service; then
        $SUDO systemctl stop etcd.service
      fi
    fi
    pid=$(cat /var/run/etcd.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/etcd ]; then
      $SUDO /etc/init.d/etcd stop >/dev/null || true
    fi
  fi
  # ovn-central / ovn-host (bench/portup.py --backend ovn) enable ovn-northd, the NB/SB
  # databases and ovn-controller for boot. The bench runs its own in the lab's run
  # directory; the packages' services must not run: disable their units, and stop
  # them through their own init script if they started anyway.
  if [[ " ${missing[*]} " == *" ovn-"* ]]; then
    if command -v systemctl >/dev/null; then
      for unit in ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb \
                  ovn-host ovn-controller; do
        $SUDO systemctl disable --quiet "$unit.service" 2>/dev/null || true
        if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit.service"; then
          $SUDO systemctl stop "$unit.service"
        fi
      done
    fi
    for pair in ovn-host:ovn-controller ovn-central:ovn-northd ovn-central:ovnnb_db \
                ovn-central:ovnsb_db; do
      script=${pair%%:*} pid=$(cat "/var/run/ovn/${pair#*:}.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ -x "/etc/init.d/$script" ]; then
        $SUDO "/etc/init.d/$script" stop >/dev/null 2>&1 || true
      fi
    done
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.plexus-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v WARNING || true
  .venv/bin/python -m pip install -q -e '.[test,dataplane]' 2>&1 | grep -v WARNING || true
  .venv/bin/python -c "import plexus, openstack, starlette" # fail loudly if the install did not take
  echo "$want" > "$stamp"
fi
