#!/usr/bin/env bash
# Makes sure the SMTP test peer can run: crates/notifications/tests/smtp.rs starts aiosmtpd (a real
# asyncio SMTP server, from PyPI) on 127.0.0.1 through tests/smtp_peer.py, and under BOXOFFICE_CI=1
# those tests fail rather than skip when it is missing. Installs it for the current user only when
# `import aiosmtpd` fails, so a machine that already has it is left alone.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  echo "smtp-peer: python3 is not installed; the SMTP tests need it (e.g. apt-get install python3 python3-pip)" >&2
  exit 1
fi

if python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "smtp-peer: aiosmtpd $(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)') already installed"
  exit 0
fi

echo "smtp-peer: installing aiosmtpd with pip"
# --user when outside a virtualenv: never write into the system's site-packages. Debian's
# externally-managed Python refuses even that without --break-system-packages, which only
# concerns the user's own site directory here.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  python3 -m pip install --quiet aiosmtpd
elif ! python3 -m pip install --quiet --user aiosmtpd 2>/dev/null; then
  python3 -m pip install --quiet --user --break-system-packages aiosmtpd
fi

python3 -c 'import aiosmtpd; print("smtp-peer: aiosmtpd", aiosmtpd.__version__, "installed")'
