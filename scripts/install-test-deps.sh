#!/usr/bin/env bash
# Installs the system packages the tests use: SIPp (sip-tester) as a real SIP peer, and
# stunnel4 to put SIPp (built without TLS) behind TLS.
# Needs root or sudo for apt-get; otherwise says what to install and those tests skip.
set -euo pipefail
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "install-test-deps: please install: ${need[*]} (apt). Tests that need them will skip." >&2
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "install-test-deps: no apt-get; please install: ${need[*]}" >&2
fi
