#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the web console's browser test
# (platforms/web-console/tests/browser.rs), idempotently: Debian's `chromium` and
# `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver), installed only when missing.
# Called by scripts/test.sh.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

printf '\n== %s\n' "installing chromium and chromium-driver (web console browser test)"
# Other setup steps may hold the dpkg lock; wait for it rather than fail.
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  chromium chromium-driver
chromium --version
chromedriver --version
