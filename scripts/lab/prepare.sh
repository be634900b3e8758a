#!/usr/bin/env bash
# Prepares the QEMU arm64 lab (see ../../../shared/QEMU-LAB.md for the facts
# behind each step): host packages, an arm64 Debian kernel with an
# out-of-tree uio_pdrv_genirq.ko, a guest rootfs (nodejs, busybox, fio),
# the addon cross-built for arm64, and the library compiled for the guest
# (with the C floor of the blk benchmark, bench/floor, beside it).
# Everything lands under $LAB_CACHE (default .lab-cache/), in stages keyed
# by their inputs, so a warm run after a source change only rebuilds the
# library layer. Prints the path of the finished initrd parts on the last
# line: "lab ready: <dir>".
#
#   bash scripts/lab/prepare.sh            (as root the first time: apt)
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${LAB_CACHE:-$root/.lab-cache}"
suite=bookworm
guest_pkgs="nodejs,busybox-static,fio"
host_pkgs=(qemu-system-arm qemu-system-data gcc-aarch64-linux-gnu g++-aarch64-linux-gnu mmdebstrap cpio xz-utils make linux-source-6.1 linux-kbuild-6.1)

say() { printf 'lab prepare: %s\n' "$*" >&2; }
die() { printf 'lab prepare: error: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
is_root() { [ "$(id -u)" = 0 ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
hash_of() { sha256sum | cut -c1-16; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 || die "cannot lock $cache/.lock"

# ---- host packages (never an :arm64 package: it would replace the host's gcc) ----
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  is_root || die "the arm64 package architecture is not enabled; as root: dpkg --add-architecture arm64 && apt-get update"
  say "enabling the arm64 architecture for apt-get download"
  dpkg --add-architecture arm64
  apt-get update -qq
fi
abi="$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*\)-arm64:arm64$/\1/p' | head -1)"
if [ -z "$abi" ]; then
  is_root || die "apt does not know linux-image-arm64:arm64; as root: apt-get update"
  apt-get update -qq
  abi="$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/.*Depends: linux-image-\(.*\)-arm64:arm64$/\1/p' | head -1)"
  [ -n "$abi" ] || die "cannot resolve the arm64 kernel ABI from 'apt-cache depends linux-image-arm64:arm64'"
fi
host_pkgs+=("linux-headers-$abi-common")
missing=()
for p in "${host_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  is_root || die "missing host packages: ${missing[*]}; as root: apt-get install --no-install-recommends ${missing[*]}"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
# The cross compiler must not have replaced the host's (see QEMU-LAB.md).
command -v g++ >/dev/null || die "the host g++ is gone: was an :arm64 package installed?"

# ---- stage: kernel + modules (keyed by the ABI and the module list) ----
# uio for our driver; the kernel's own virtio drivers for side-by-side checks
# and benchmarks (virtio and virtio_ring are built in).
kernel_modules=(
  drivers/uio/uio.ko
  drivers/virtio/virtio_mmio.ko
  drivers/block/virtio_blk.ko
  drivers/char/hw_random/virtio-rng.ko
  net/core/failover.ko
  drivers/net/net_failover.ko
  drivers/net/virtio_net.ko
)
kernel="$cache/kernel-$abi-$(echo "${kernel_modules[*]}" | hash_of)"
if [ ! -f "$kernel/done" ]; then
  say "kernel $abi: downloading the arm64 image and headers ($(elapsed))"
  rm -rf "$cache"/kernel-*
  rm -rf "$kernel"; mkdir -p "$kernel/debs" "$kernel/x" "$kernel/modules"
  (cd "$kernel/debs" && apt-get download -qq -o APT::Sandbox::User=root "linux-image-$abi-arm64:arm64" "linux-headers-$abi-arm64:arm64" >/dev/null) \
    || die "apt-get download of linux-image-$abi-arm64:arm64 failed"
  for deb in "$kernel"/debs/*.deb; do dpkg -x "$deb" "$kernel/x"; done
  cp "$kernel/x/boot/vmlinuz-$abi-arm64" "$kernel/vmlinuz"
  for m in "${kernel_modules[@]}"; do
    cp "$kernel/x/lib/modules/$abi-arm64/kernel/$m" "$kernel/modules/" || die "the kernel package has no $m"
  done
  # The headers' Makefile includes the -common tree and links into linux-kbuild by /usr/src paths.
  headers="/usr/src/linux-headers-$abi-arm64"
  if [ ! -d "$headers" ]; then
    is_root || die "$headers is missing; run this once as root"
    cp -a "$kernel/x/usr/src/linux-headers-$abi-arm64" /usr/src/
  fi
  say "kernel $abi: building uio_pdrv_genirq.ko ($(elapsed))"
  mod="$kernel/uio-build"; mkdir -p "$mod"
  tar -xJf /usr/src/linux-source-6.1.tar.xz -O linux-source-6.1/drivers/uio/uio_pdrv_genirq.c > "$mod/uio_pdrv_genirq.c"
  echo 'obj-m := uio_pdrv_genirq.o' > "$mod/Kbuild"
  make -s -C "$headers" M="$mod" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$mod/build.log" 2>&1 \
    || { tail -20 "$mod/build.log" >&2; die "building uio_pdrv_genirq.ko failed (log: $mod/build.log)"; }
  cp "$mod/uio_pdrv_genirq.ko" "$kernel/modules/"
  stage="$kernel/cpio"; rm -rf "$stage"; mkdir -p "$stage/lab/modules"
  cp "$kernel"/modules/*.ko "$stage/lab/modules/"
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1 > "$kernel/modules.cpio.gz")
  rm -rf "$kernel/x" "$kernel/debs" "$stage"
  touch "$kernel/done"
fi

# ---- stage: guest rootfs (keyed by the arm64 package versions) ----
versions="$(for p in ${guest_pkgs//,/ }; do apt-cache policy "$p:arm64" | sed -n 's/ *Candidate: //p'; done | tr '\n' ' ')"
rootfs="$cache/rootfs-$(echo "$suite $guest_pkgs $versions" | hash_of)"
if [ ! -f "$rootfs/done" ]; then
  is_root || die "building the guest rootfs needs root (mmdebstrap extract keeps file ownership)"
  say "rootfs: mmdebstrap $guest_pkgs ($versions) ($(elapsed))"
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  tree="$rootfs/tree"
  mmdebstrap --quiet --variant=extract --arch=arm64 --include="$guest_pkgs" "$suite" "$tree" >"$rootfs/mmdebstrap.log" 2>&1 \
    || { tail -20 "$rootfs/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $rootfs/mmdebstrap.log)"; }
  rm -rf "$tree/usr/share/doc" "$tree/usr/share/man" "$tree/usr/share/locale" "$tree/var/cache/apt" "$tree/var/lib/apt/lists"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1 > "$rootfs/base.cpio.gz")
  rm -rf "$tree"
  touch "$rootfs/done"
fi

# ---- stage: the addon for arm64 (keyed by its sources) ----
addon_key="$( (cat "$root/binding.gyp" "$root"/native/*.cc "$root"/native/*.h; node -p "require('$root/node_modules/node-addon-api/package.json').version") | hash_of)"
addon="$cache/addon-arm64-$addon_key"
if [ ! -f "$addon/virtio_mmio.node" ]; then
  say "addon: cross-building for arm64 ($(elapsed))"
  build="$cache/addon-build"; rm -rf "$build"; mkdir -p "$build"
  cp -a "$root/binding.gyp" "$root/native" "$build/"
  node_prefix="$(dirname "$(dirname "$(command -v node)")")"
  nodedir_args=()
  [ -f "$node_prefix/include/node/node_api.h" ] && nodedir_args=(--nodedir="$node_prefix")
  (cd "$build" && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
    "$root/node_modules/.bin/node-gyp" rebuild --arch=arm64 "${nodedir_args[@]}" >"$build/build.log" 2>&1) \
    || { tail -20 "$build/build.log" >&2; die "cross-building the addon failed (log: $build/build.log)"; }
  file -b "$build/build/Release/virtio_mmio.node" 2>/dev/null | grep -q aarch64 || \
    aarch64-linux-gnu-readelf -h "$build/build/Release/virtio_mmio.node" | grep -q AArch64 || die "the cross-built addon is not arm64"
  mkdir -p "$addon"
  cp "$build/build/Release/virtio_mmio.node" "$addon/"
  rm -rf "$build"
fi

# ---- stage: the library for the guest (keyed by its sources; seconds) ----
lib_key="$( (cd "$root" && find lib test/contracts scripts/lab/guest scripts/lab/init.sh scripts/lab/tsconfig.guest.json bench/floor -type f | sort | xargs cat; echo "$addon_key"; node -p "require('$root/node_modules/node-gyp-build/package.json').version") | hash_of)"
library="$cache/library-$lib_key"
if [ ! -f "$library/done" ]; then
  say "library: compiling for the guest ($(elapsed))"
  rm -rf "$library"
  stage="$library/stage"; app="$stage/opt/virtio-mmio"
  # The package's layout: the addon as the linux-arm64 prebuild, found by node-gyp-build; no build/ and no compiler in the guest.
  mkdir -p "$app/prebuilds/linux-arm64" "$app/node_modules" "$stage/lab"
  "$root/node_modules/.bin/tsc" -p "$root/scripts/lab/tsconfig.guest.json" --outDir "$app" \
    || die "compiling the library for the guest failed"
  printf '{ "name": "virtio-mmio-lab", "private": true }\n' > "$app/package.json"
  cp -a "$root/node_modules/node-gyp-build" "$app/node_modules/"
  cp "$addon/virtio_mmio.node" "$app/prebuilds/linux-arm64/node.napi.armv8.glibc.node"
  [ ! -e "$app/build" ] || die "the guest must load its prebuild, not a build/ directory"
  # The C floor under the blk benchmark (bench/lab-vs-kernel.js), static: no guest libc to match.
  mkdir -p "$app/bench"
  aarch64-linux-gnu-gcc -O2 -Wall -Wextra -static -o "$app/bench/blk-floor" "$root/bench/floor/blk-floor.c" \
    || die "cross-compiling bench/floor/blk-floor.c failed"
  install -m 0755 "$root/scripts/lab/init.sh" "$stage/init"
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1 > "$library/library.cpio.gz")
  rm -rf "$stage"
  touch "$library/done"
  # Older builds go only once this one is complete: a source tree that does not compile leaves the last good build in place.
  find "$cache" -maxdepth 1 -name 'library-*' ! -path "$library" -exec rm -rf {} +
fi

# The parts a boot concatenates (Linux unpacks each cpio archive in turn).
ready="$cache/ready"
mkdir -p "$ready"
ln -sfn "$kernel/vmlinuz" "$ready/vmlinuz"
ln -sfn "$rootfs/base.cpio.gz" "$ready/1-base.cpio.gz"
ln -sfn "$kernel/modules.cpio.gz" "$ready/2-modules.cpio.gz"
ln -sfn "$library/library.cpio.gz" "$ready/3-library.cpio.gz"
say "done in $(elapsed)"
echo "lab ready: $ready"
