#!/usr/bin/env bash
# Install what the browser and relying-party tests need beyond Python packages:
# Debian's Chromium and CJK fonts, docker-compose, promtool, Apache with mod_auth_openidc, and the npm packages
# under tests/e2e/js.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need_apt+=(fonts-noto-cjk)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# deploy/ checks (docker-compose config) and the Apache mod_auth_openidc relying-party test.
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
[ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || need_apt+=(libapache2-mod-auth-openidc)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool checks deploy/prometheus
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

if [ -f tests/e2e/js/package.json ]; then
  (cd tests/e2e/js && if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund; else npm install --silent --no-audit --no-fund; fi)
fi
