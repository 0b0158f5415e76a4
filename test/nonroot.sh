#!/usr/bin/env bash
# The mocha suite as an ordinary user (no capabilities): what needs privilege (EVENT_FORK,
# userModeOnly: false, /dev/userfaultfd, reserving huge pages) must skip and say why, not fail.
#
#   bash test/nonroot.sh [MOCHA_ARG...]        (npm run test:nonroot -- [MOCHA_ARG...])
#
# Needs a build (dist/ and build/Release: npm run build). As root: creates the user
# UFFD_TEST_USER (default uffd-test) unless it exists, copies the built package into a scratch
# directory that user owns (a checkout under /root is not even readable to it), runs mocha there
# as that user, and removes the copy. As any other user: runs mocha in place.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -d "$ROOT/dist/test" ] || { echo "nonroot: $ROOT/dist missing: run npm run build first" >&2; exit 2; }
MOCHA=node_modules/mocha/bin/mocha.js

if [ "$(id -u)" -ne 0 ]; then
  cd "$ROOT"
  exec node "$MOCHA" "$@"
fi

USER_NAME="${UFFD_TEST_USER:-uffd-test}"
if ! id -u "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
  echo "nonroot: created user $USER_NAME"
fi
WORK="$(mktemp -d /tmp/uffd-nonroot.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
tar -C "$ROOT" --exclude=./.git -cf - . | tar -C "$WORK" -xf -
chown -R "$USER_NAME:" "$WORK"
chmod 755 "$WORK"
echo "nonroot: running mocha as $USER_NAME ($(id "$USER_NAME")) in $WORK"
cd "$WORK"
# HOME and TMPDIR of its own: the user has no home, and root's are not its to write.
mkdir -p "$WORK/.home" "$WORK/.tmp" && chown "$USER_NAME:" "$WORK/.home" "$WORK/.tmp"
runuser -u "$USER_NAME" -- env HOME="$WORK/.home" TMPDIR="$WORK/.tmp" node "$MOCHA" "$@"
