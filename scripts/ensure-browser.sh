#!/usr/bin/env bash
# Make sure the browser tests can run: Debian's chromium at /usr/bin/chromium (driven by Python
# playwright; never `playwright install`) and a loopback interface for the Jupyter kernels.
# Installs what is missing with apt-get (as root, else through sudo). Where that is impossible it
# prints one line naming what is missing and the command that installs it, and exits 1.
set -uo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 127
  fi
}

if ! [ -x /usr/bin/chromium ]; then
  echo "browser tests: /usr/bin/chromium is missing; installing Debian's chromium (apt-get)"
  if ! command -v apt-get >/dev/null; then
    echo "make test: the browser tests need Chromium at /usr/bin/chromium and this machine has no apt-get; install it (Debian/Ubuntu: sudo apt-get install -y chromium) and run make test again" >&2
    exit 1
  fi
  log=$(mktemp)
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >"$log" 2>&1 \
     || ! [ -x /usr/bin/chromium ]; then
    why=$(grep -E "^(E:|W:)" "$log" | head -1)
    [ "$(id -u)" = 0 ] || command -v sudo >/dev/null || why="not root and no sudo"
    echo "make test: could not install Chromium for the browser tests (${why:-see apt-get}); install it with: sudo apt-get install -y chromium" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "browser tests: installed $(/usr/bin/chromium --version 2>/dev/null | head -1)"
fi

# Jupyter kernels talk ZMQ over loopback; some sandboxes start with it down.
if command -v ip >/dev/null && ip link show lo 2>/dev/null | grep -q "state DOWN"; then
  as_root ip link set lo up || {
    echo "make test: the loopback interface is down and could not be brought up; run: sudo ip link set lo up" >&2
    exit 1
  }
fi
exit 0
