#!/usr/bin/env bash
# Debian packages some tests need: nginx with njs (the replica-routing example) and Chromium
# (the page tests in a real browser). Installs only what is missing; needs root and apt-get.
#
#   bash scripts/system-deps.sh
set -euo pipefail
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "system-deps: not root or no apt-get: skipping (tests that need them are skipped)"
    exit 0
fi
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
ls /usr/lib/nginx/modules/ngx_http_js_module.so >/dev/null 2>&1 || need+=(libnginx-mod-http-js)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 || need+=(fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
    echo "system-deps: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null
fi
echo "system-deps: ok"
