#!/usr/bin/env bash
# Installs what the screen-sharing tests need (lifeline-screen): the Xvfb virtual X server.
# Idempotent: does nothing when Xvfb is already there. The tests start their own Xvfb on a free
# display (-displayfd) and draw their own test pattern with an X11 client of their own, so no
# other X tool is needed.
set -euo pipefail
if command -v Xvfb >/dev/null 2>&1; then
  exit 0
fi
printf '\n== installing Xvfb (screen-sharing tests)\n'
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends xvfb
command -v Xvfb >/dev/null 2>&1 || { echo "Xvfb still missing after apt-get install xvfb" >&2; exit 1; }
