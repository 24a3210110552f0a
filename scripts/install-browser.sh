#!/usr/bin/env bash
# Install Debian's Chromium and its driver for the browser test (tests/test_practice_browser.py) when
# /usr/bin/chromium or /usr/bin/chromedriver is missing, as root with apt-get. Never fails the caller: when it
# cannot install them it prints one line saying the browser test will be skipped, and exits 0.

skip() {
  echo "install-browser: $1; the browser test will be skipped" >&2
  exit 0
}

have_browser() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

main() {
  have_browser && return 0
  [ "${EUID:-$(id -u 2>/dev/null)}" = "0" ] ||
    skip "chromium or chromedriver missing and not root (apt-get install chromium chromium-driver)"
  command -v apt-get >/dev/null 2>&1 || skip "chromium or chromedriver missing and no apt-get to install them"
  echo "install-browser: installing chromium and chromium-driver with apt-get (for the browser test)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
    skip "apt-get install chromium chromium-driver failed"
  have_browser || skip "chromium and chromium-driver installed, but /usr/bin/chromium or /usr/bin/chromedriver is missing"
  return 0
}

main "$@" || true
exit 0
