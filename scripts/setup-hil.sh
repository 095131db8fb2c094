#!/usr/bin/env bash
# Tools for the firmware and its hardware-in-loop tests, idempotently: the bare-metal Rust target,
# QEMU's Arm system emulator (for the mps2-an386 board) and socat (QEMU's guestfwd runs it to
# reach the relay on 127.0.0.1). Called by scripts/setup.sh.
#
# Debian bookworm's own qemu-system-arm (7.2) conflicts with the machine's qemu-utils 10.0.2,
# which comes from bookworm-backports, so QEMU comes from backports too. The backports source is
# derived from the machine's existing Debian source (same mirror), and written only if missing.
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }

rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! command -v socat >/dev/null 2>&1; then
  log "installing socat"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends socat
fi

if command -v qemu-system-arm >/dev/null 2>&1; then
  exit 0
fi

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding a bookworm-backports apt source"
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" | $sudo tee /etc/apt/sources.list.d/lifeline-backports.sources >/dev/null
fi

log "installing qemu-system-arm from bookworm-backports"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-arm
qemu-system-arm --version | head -n1
