#!/usr/bin/env bash
# The mocha suite against the addon built with AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   bash test/sanitize.sh [MOCHA_ARG...]        (npm run test:sanitize -- [MOCHA_ARG...])
#
# Needs a normal build first (dist/: npm run build). The sanitized addon is built in a scratch
# copy of the package (UFFD_SANITIZE_DIR, default a new /tmp/uffd-sanitize.XXXXXX, removed after
# a clean run), so build/Release, which the normal run and the VM matrix use, is never touched.
# Exits non-zero if mocha fails or if any process of the run (the tests spawn many children, which
# inherit the environment below) printed a sanitizer report: a report in a child that the test
# did not look at would otherwise go unnoticed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -d "$ROOT/dist/test" ] || { echo "sanitize: $ROOT/dist missing: run npm run build first" >&2; exit 2; }
command -v g++ >/dev/null || { echo "sanitize: needs g++" >&2; exit 2; }

WORK="${UFFD_SANITIZE_DIR:-$(mktemp -d /tmp/uffd-sanitize.XXXXXX)}"
mkdir -p "$WORK"
# The package without its build, .git and node_modules (linked: only read).
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./prebuilds --exclude=./node_modules -cf - . | tar -C "$WORK" -xf -
ln -sfn "$ROOT/node_modules" "$WORK/node_modules"

# gyp's make files add CFLAGS/CXXFLAGS/LDFLAGS from the environment to every compile and link.
# -fno-sanitize=vptr: Node's common.gypi builds with -fno-rtti, which vptr checks need.
# -O1 -fno-omit-frame-pointer -g: readable stacks in reports at a bearable speed.
SAN="-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer -g -O1"
echo "sanitize: building the addon in $WORK with $SAN"
(cd "$WORK" && CFLAGS="$SAN" CXXFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" npx node-gyp rebuild >"$WORK/node-gyp.log" 2>&1) ||
  { tail -n 40 "$WORK/node-gyp.log"; echo "sanitize: build failed" >&2; exit 2; }
ADDON="$WORK/build/Release/userfaultfd.node"
# grep reads all of ldd's output: with -q it could exit first, and under pipefail the SIGPIPE ldd
# then gets would read as "not linked".
ldd "$ADDON" | grep libasan >/dev/null || { echo "sanitize: $ADDON is not linked with libasan" >&2; exit 2; }

# Node itself is not instrumented: the ASan runtime must be the first library loaded, before
# node's own, or it refuses to start ("ASan runtime does not come first"). LD_PRELOAD does that,
# for every node the tests spawn as well (children inherit the environment).
LIBASAN="$(readlink -f "$(g++ -print-file-name=libasan.so)")"
[ -f "$LIBASAN" ] || { echo "sanitize: no libasan.so (apt-get install g++)" >&2; exit 2; }
export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
# handle_segv=0, handle_sigbus=0: tests make children die of SIGSEGV (a write to read-only
#   memory) and SIGBUS (POISON, the SIGBUS feature) on purpose and assert the signal; with ASan's
#   handlers the child would exit 1 with a "SEGV on unknown address" report instead. A crash of
#   ours still fails the test that sees the signal.
# detect_leaks=0: Node does not free its isolate, its platform threads' data and much else at
#   exit, by design (the process is ending); LeakSanitizer would report all of it in every node
#   process. Leaks of ours are covered by the suite's fd/RSS loops instead.
# allow_user_segv_handler=1: V8 installs its own SIGSEGV handler (WebAssembly bounds traps).
export ASAN_OPTIONS="handle_segv=0:handle_sigbus=0:detect_leaks=0:allow_user_segv_handler=1:halt_on_error=1:print_summary=1:color=never${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# A UB report is fatal and shows where: otherwise UBSan prints and carries on.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:color=never${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Everything runs slower under ASan: a floor for the suite's measured speed factor.
export UFFD_TEST_SPEED_FLOOR="${UFFD_TEST_SPEED_FLOOR:-2}"

LOG="$WORK/mocha.log"
echo "sanitize: running mocha with LD_PRELOAD=$LD_PRELOAD"
set +e
(cd "$WORK" && node node_modules/mocha/bin/mocha.js --no-color "$@") 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
reports=$(grep -cE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$LOG" || true)
if [ "$reports" -gt 0 ]; then
  echo "sanitize: $reports sanitizer report line(s) in $LOG:"
  grep -nE -A 12 'ERROR: AddressSanitizer|runtime error:' "$LOG" | head -n 200
fi
if [ "$rc" -ne 0 ] || [ "$reports" -gt 0 ]; then
  echo "sanitize: FAILED (mocha exit $rc, $reports report line(s)); kept $WORK"
  exit 1
fi
echo "sanitize: clean (mocha exit 0, no sanitizer report)"
[ -n "${UFFD_SANITIZE_DIR:-}" ] || rm -rf "$WORK"
