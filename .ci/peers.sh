#!/usr/bin/env bash
# Makes sure the tests' real peers can run, from PyPI:
#   aiosmtpd    — the SMTP server crates/notifications/tests/smtp.rs sends to (tests/smtp_peer.py);
#   localstripe — the stateful fake of Stripe's API crates/boxoffice/tests/api/stripe.rs pays
#                 through (tests/peers/stripe_peer.py).
# Each test starts its own peer on 127.0.0.1; under BOXOFFICE_CI=1 those tests fail rather than
# skip when a peer is missing. Installs a package for the current user only when importing it
# fails, so a machine that already has it is left alone.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  echo "peers: python3 is not installed; the SMTP and Stripe tests need it (e.g. apt-get install python3 python3-pip)" >&2
  exit 1
fi

install() {
  local package=$1 module=$2
  if python3 -c "import ${module}" >/dev/null 2>&1; then
    echo "peers: ${package} already installed"
    return
  fi
  echo "peers: installing ${package} with pip"
  # --user when outside a virtualenv: never write into the system's site-packages. Debian's
  # externally-managed Python refuses even that without --break-system-packages, which only
  # concerns the user's own site directory here.
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install --quiet "${package}"
  elif ! python3 -m pip install --quiet --user "${package}" 2>/dev/null; then
    python3 -m pip install --quiet --user --break-system-packages "${package}"
  fi
  python3 -c "import ${module}" && echo "peers: ${package} installed"
}

install aiosmtpd aiosmtpd
install localstripe localstripe
