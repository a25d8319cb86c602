#!/bin/sh
# Browser test of the bundled web client against a running gateway.
# Usage: CHAT_TEST_URL=http://127.0.0.1:8080/ [CHAT_TEST_SCREENSHOT=/tmp/chat.png] tests/browser/run.sh
# Needs Debian's chromium (/usr/bin/chromium) and node; installs playwright-core
# from package-lock.json on first use.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node test.js
