#!/usr/bin/env bash
# Build a cpio initramfs that boots straight into the package's mocha suite.
#
#   test/vm/initramfs.sh ARCH PKG_DIR OUT.cpio [MOCHA_ARG...]
#   VM_EXEC="shell command" (env): run this in /pkg instead of mocha (probes, benches); its
#   exit status becomes VM-RESULT.
#   VM_TRACE=1 (env): print "VM-TEST-START <title>" before each test (to place a crash).
#   VM_STALL=SECONDS (env, default 300) and VM_CAP=SECONDS (env, default 2370): the in-guest
#   watchdog. A run is hung when no test has started or ended for VM_STALL seconds, or for twice
#   the running test's mocha timeout plus 30 s if that is longer (a test may raise its own); or
#   when it has run VM_CAP seconds in all. Then it names the test, shows what the kernel says
#   node's threads wait on, and powers off, before the host has to kill the VM blind. While a
#   test runs long it prints a VM-WAITING line every minute: the host takes a console that stays
#   silent for minutes as a dead VM.
#
# ARCH     arm64 | x64
# PKG_DIR  a staged package for that ARCH (package.json, .mocharc.*, dist/, node_modules with
#          the test's runtime closure, build/Release/*.node built for ARCH); it becomes /pkg.
# The guest is only: busybox-static (shell + mount + poweroff), the dynamic loader and the few
# libraries Node needs, Node at a real path (/usr/local/bin/node: tests spawn process.execPath),
# /pkg and /init.  No disk image: the kernel unpacks this archive into its rootfs.
#
# The archive is not compressed on purpose: under TCG the guest's decompressor is slow, and
# copying ~100 MB of plain cpio costs the kernel less than gunzipping it.
set -euo pipefail

ARCH="$1"; PKG="$(cd "$2" && pwd)"; OUT="$3"; shift 3
CACHE="${UFFD_VM_CACHE:-$HOME/.cache/userfaultfd-vm}"
NODE_VER=$(node -p process.versions.node)

ROOT="$(mktemp -d /tmp/uffd-initramfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,root,etc,usr/local/bin,lib}

# A stripped copy of node, cached (stripping the debug info saves ~15 MB of cpio per boot).
stripped_node() { # SRC STRIP_TOOL -> prints cached path
  local src="$1" strip="$2" dst="$CACHE/node-bin/$ARCH-$NODE_VER/node"
  if [ ! -x "$dst" ] || [ "$src" -nt "$dst" ]; then
    mkdir -p "$(dirname "$dst")"; "$strip" -o "$dst.tmp" "$src"; mv "$dst.tmp" "$dst"
  fi
  echo "$dst"
}

case "$ARCH" in
  arm64)
    SYS="$CACHE/sysroot-arm64"
    [ -f "$SYS/.done" ] || { echo "initramfs: run test/vm/fetch.sh first" >&2; exit 1; }
    cp "$SYS/bin/busybox" "$ROOT/bin/busybox"
    # The whole libc6 lib dir is ~4 MB: simpler and safer than chasing DT_NEEDED by hand.
    mkdir -p "$ROOT/lib/aarch64-linux-gnu"
    cp -a "$SYS/lib/aarch64-linux-gnu/." "$ROOT/lib/aarch64-linux-gnu/"
    cp -a "$SYS"/usr/lib/aarch64-linux-gnu/libstdc++.so.6* "$ROOT/lib/aarch64-linux-gnu/"
    ln -s aarch64-linux-gnu/ld-linux-aarch64.so.1 "$ROOT/lib/ld-linux-aarch64.so.1"
    cp "$(stripped_node "$CACHE/node-arm64/$NODE_VER/package/bin/node" aarch64-linux-gnu-strip)" "$ROOT/usr/local/bin/node"
    ;;
  x64)
    # The host is x86_64 Debian: reuse its static busybox, its node and the libraries ldd names.
    [ -x /bin/busybox ] || { echo "initramfs: apt-get install busybox-static" >&2; exit 1; }
    cp /bin/busybox "$ROOT/bin/busybox"
    HOST_NODE="$(readlink -f "${NODE_BIN:-$(command -v node)}")"
    cp "$(stripped_node "$HOST_NODE" strip)" "$ROOT/usr/local/bin/node"
    # Libraries of node and of every .node addon in the package, at the paths ldd reports.
    libs=$( { ldd "$HOST_NODE"; find "$PKG" -name '*.node' -exec ldd {} \; ; } 2>/dev/null \
            | grep -oE '(/[^ ]+\.so[^ ]*)' | sort -u)
    for l in $libs; do
      mkdir -p "$ROOT$(dirname "$l")"; cp -L "$l" "$ROOT$l"
    done
    ;;
  *) echo "initramfs: unknown arch $ARCH" >&2; exit 1 ;;
esac

cp -a "$PKG" "$ROOT/pkg"

# Root-hook plugin (mocha >= 8): notes the running test so the watchdog can name it.
cat > "$ROOT/vm-hooks.cjs" <<'HOOKS'
// Every test start and end writes /tmp/.vm-progress ("<count> <timeout ms>"): the watchdog
// takes a count that stops changing as a hang.
const fs = require('fs');
let events = 0;
const progress = (t) => { try { fs.writeFileSync('/tmp/.vm-progress', `${++events} ${t ? t.timeout() : 0}`); } catch {} };
exports.mochaHooks = {
  beforeEach() {
    try { fs.writeFileSync('/tmp/.vm-current-test', this.currentTest.fullTitle()); } catch {}
    progress(this.currentTest);
    if (process.env.VM_TRACE) process.stdout.write(`VM-TEST-START ${this.currentTest.fullTitle()}\n`);
  },
  afterEach() {
    progress(this.currentTest);
  },
};
HOOKS
# Mocha's arguments, each single-quoted for the guest shell.
margs=""
for a in "$@"; do margs+=" '${a//\'/\'\\\'\'}'"; done

STALL="${VM_STALL:-300}"
CAP="${VM_CAP:-2370}"
if [ -n "${VM_EXEC:-}" ]; then
  printf '%s\n' "$VM_EXEC" > "$ROOT/vm-exec.sh"
  RUN="sh /vm-exec.sh"
else
  RUN="node node_modules/mocha/bin/mocha.js --reporter spec --no-color --require /vm-hooks.cjs$margs"
fi

cat > "$ROOT/init" <<INIT
#!/bin/busybox sh
# PID 1 of the test VM.  Every path out of here must end in a poweroff (or a kernel panic,
# which with panic=-1 and qemu -no-reboot also ends the VM).
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin:/sbin HOME=/root TERM=dumb NO_COLOR=1 FORCE_COLOR=0 CI=true
# Tells the tests they run under emulation (8-16x slower, one vCPU), so that stress and timing
# tests can scale down instead of hitting mocha timeouts.
export UFFD_TEST_VM=1
${VM_TRACE:+export VM_TRACE=1}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# devtmpfs: without it there is no /dev/userfaultfd (the kernel creates the node there).
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/fd /dev/fd 2>/dev/null
# Let the kernel report crashing user processes (pc, ESR); seen only with a console
# loglevel above 6 (run.mjs --cmdline loglevel=7), as the tests crash children on purpose.
echo 1 > /proc/sys/debug/exception-trace 2>/dev/null
# Reserve ~128 MiB of default-size huge pages (2 MiB on 4K kernels, 32 MiB on 16K ones),
# at least 2, so hugetlbfs tests have something to map.
hp=\$(awk '/^Hugepagesize:/ {print \$2}' /proc/meminfo)
if [ -n "\$hp" ]; then
  n=\$((131072 / hp)); [ "\$n" -lt 2 ] && n=2
  echo "\$n" > /proc/sys/vm/nr_hugepages
fi
ps=\$(awk '/^KernelPageSize:/ {print \$2; exit}' /proc/self/smaps)
echo "VM-INFO kernel=\$(uname -r) machine=\$(uname -m) pagesize=\${ps}k hugepagesize=\${hp}kB nr_hugepages=\$(cat /proc/sys/vm/nr_hugepages) uptime=\$(cut -d' ' -f1 /proc/uptime)"
# Watchdog: a test that touches a registered page with no handler blocks forever, and mocha's
# own timeout cannot fire while the JS thread sleeps in a fault.  A hang is the absence of
# progress (no test started or ended for a while), not a total time a slow machine can exceed
# while working.  Name the test, show where each task sleeps in the kernel (wchan, e.g.
# handle_userfault), then power off.
(
  last=""; silent=0; elapsed=0
  while :; do
    sleep 10; elapsed=\$((elapsed + 10))
    cur=\$(cat /tmp/.vm-progress 2>/dev/null)
    if [ "\$cur" != "\$last" ]; then last="\$cur"; silent=0; else silent=\$((silent + 10)); fi
    allowed=$STALL
    ms=\${cur#* }
    if [ -n "\$cur" ] && [ "\$ms" -gt 0 ] 2>/dev/null; then
      a=\$((2 * ms / 1000 + 30)); [ "\$a" -gt "\$allowed" ] && allowed=\$a
    fi
    if [ "\$silent" -ge "\$allowed" ]; then why="\${silent}s without a test starting or ending"; break; fi
    if [ "\$elapsed" -ge $CAP ]; then why="\${elapsed}s, the overall cap"; break; fi
    [ "\$silent" -ge 60 ] && [ \$((silent % 60)) -eq 0 ] && echo "VM-WAITING \${silent}s (of \${allowed}s) in test: \$(cat /tmp/.vm-current-test 2>/dev/null)"
  done
  echo
  echo "VM-HUNG after \$why in test: \$(cat /tmp/.vm-current-test 2>/dev/null)"
  for t in /proc/[0-9]*/task/[0-9]*; do
    c=\$(cat \$t/comm 2>/dev/null)
    case "\$c" in node|*Worker*|libuv*|V8*|*uffd*) echo "  task \${t#/proc/} \$c wchan=\$(cat \$t/wchan 2>/dev/null)";; esac
  done
  poweroff -f
) &
cd /pkg
echo "VM-BEGIN"
$RUN
echo "VM-RESULT rc=\$?"
echo "VM-END uptime=\$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
echo o > /proc/sysrq-trigger
INIT
chmod 755 "$ROOT/init"

(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
