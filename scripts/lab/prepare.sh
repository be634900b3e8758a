#!/usr/bin/env bash
# Prepares a QEMU lab: host packages, a Debian kernel with an out-of-tree
# uio_pdrv_genirq.ko, a guest rootfs (nodejs, busybox; fio on arm64), the
# addon cross-built for the guest, and the library compiled for the guest
# (on arm64 with the C floor of the blk benchmark, bench/floor, beside it).
# Three guests: arm64 (the default; -M virt, Debian's arm64 kernel), armhf
# (32-bit armv7 hard-float; Debian's armmp-lpae kernel) and amd64 (an
# x86-64 -M microvm with Debian's amd64 kernel, no UIO, and the host's own
# addon build from build/Release), lab-arch.sh.
# arm64 and armhf also get QEMU 10.0 from bookworm-backports, unpacked beside
# the host's 7.2 (ready*/qemu): armhf's above-4GiB boot and arm64's in-order
# boot (run.js: ARCHES.armhf.above4GiB, ARCHES.arm64.backport) use it; every
# other boot keeps the host's.
# Everything lands under $LAB_CACHE (default .lab-cache/), in stages keyed
# by their inputs, so a warm run after a source change only rebuilds the
# library layer. Prints the path of the finished initrd parts on the last
# line: "lab ready: <dir>" (ready/ for arm64, ready-<arch>/ for the others).
#
#   bash scripts/lab/prepare.sh [--arch arm64|armhf|amd64|all]   (as root the first time: apt)
#   LAB_ARCH=armhf bash scripts/lab/prepare.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${LAB_CACHE:-$root/.lab-cache}"
arch="${LAB_ARCH:-arm64}"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || { echo "lab prepare: --arch needs arm64, armhf, amd64 or all" >&2; exit 2; }; arch="$2"; shift 2 ;;
    --arch=*) arch="${1#--arch=}"; shift ;;
    *) echo "lab prepare: unknown argument $1 (usage: prepare.sh [--arch arm64|armhf|amd64|all])" >&2; exit 2 ;;
  esac
done
if [ "$arch" = all ]; then
  for a in arm64 armhf amd64; do LAB_ARCH="$a" bash "$0"; done
  exit 0
fi
# shellcheck source=lab-arch.sh
source "$(dirname "$0")/lab-arch.sh"
lab_arch "$arch" || { echo "lab prepare: unknown arch '$arch' (arm64, armhf, amd64 or all)" >&2; exit 2; }
suite=bookworm

say() { printf 'lab prepare (%s): %s\n' "$arch" "$*" >&2; }
die() { printf 'lab prepare (%s): error: %s\n' "$arch" "$*" >&2; exit 1; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
is_root() { [ "$(id -u)" = 0 ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
hash_of() { sha256sum | cut -c1-16; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 || die "cannot lock $cache/.lock"

# ---- host packages (never an :arm64/:armhf package: it would replace the host's gcc) ----
if [ "$deb_arch" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
  is_root || die "the $deb_arch package architecture is not enabled; as root: dpkg --add-architecture $deb_arch && apt-get update"
  say "enabling the $deb_arch architecture for apt-get download"
  dpkg --add-architecture "$deb_arch"
  # A suite whose index fails (a mirror mid-sync) leaves apt with the others; the ABI below is checked.
  apt-get update -qq || say "apt-get update reported errors; going on with the indexes it has"
fi
# (apt-cache leaves the :arch suffix off the host's own architecture.)
resolve_abi() { apt-cache depends "$kernel_meta:$deb_arch" 2>/dev/null | sed -n "s/.*Depends: linux-image-\(.*\)-$flavour\(:$deb_arch\)\{0,1\}\$/\1/p" | head -1; }
abi="$(resolve_abi)"
if [ -z "$abi" ]; then
  is_root || die "apt does not know $kernel_meta:$deb_arch; as root: apt-get update"
  apt-get update -qq || say "apt-get update reported errors; going on with the indexes it has"
  abi="$(resolve_abi)"
  [ -n "$abi" ] || die "cannot resolve the $deb_arch kernel ABI from 'apt-cache depends $kernel_meta:$deb_arch'"
fi
[ "$uio_module" = 0 ] || host_pkgs+=("linux-headers-$abi-common")
missing=()
for p in "${host_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  is_root || die "missing host packages: ${missing[*]}; as root: apt-get install --no-install-recommends ${missing[*]}"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
# The cross compiler must not have replaced the host's: a foreign-arch gcc package (:arm64, :armhf) does that.
command -v g++ >/dev/null || die "the host g++ is gone: was an :arm64 or :armhf package installed?"

# ---- stage: kernel + modules (keyed by the ABI and the module list, lab-arch.sh) ----
kernel="$cache/kernel-$tag$abi-$(echo "${kernel_modules[*]}" | hash_of)"
if [ ! -f "$kernel/done" ]; then
  say "kernel $abi: downloading the $deb_arch $flavour image and headers ($(elapsed))"
  stale kernel- "$kernel"
  rm -rf "$kernel"; mkdir -p "$kernel/debs" "$kernel/x" "$kernel/modules"
  debs=("linux-image-$abi-$flavour:$deb_arch")
  [ "$uio_module" = 0 ] || debs+=("linux-headers-$abi-$flavour:$deb_arch")
  (cd "$kernel/debs" && apt-get download -qq -o APT::Sandbox::User=root "${debs[@]}" >/dev/null) \
    || die "apt-get download of linux-image-$abi-$flavour:$deb_arch failed"
  for deb in "$kernel"/debs/*.deb; do dpkg -x "$deb" "$kernel/x"; done
  cp "$kernel/x/boot/vmlinuz-$abi-$flavour" "$kernel/vmlinuz"
  for m in "${kernel_modules[@]}"; do
    cp "$kernel/x/lib/modules/$abi-$flavour/kernel/$m" "$kernel/modules/" || die "the kernel package has no $m"
  done
  if [ "$uio_module" = 1 ]; then
    # The headers' Makefile includes the -common tree and links into linux-kbuild by /usr/src paths.
    headers="/usr/src/linux-headers-$abi-$flavour"
    if [ ! -d "$headers" ]; then
      is_root || die "$headers is missing; run this once as root"
      cp -a "$kernel/x/usr/src/linux-headers-$abi-$flavour" /usr/src/
    fi
    say "kernel $abi: building uio_pdrv_genirq.ko ($(elapsed))"
    mod="$kernel/uio-build"; mkdir -p "$mod"
    tar -xJf /usr/src/linux-source-6.1.tar.xz -O linux-source-6.1/drivers/uio/uio_pdrv_genirq.c > "$mod/uio_pdrv_genirq.c"
    # Debian's amd64 modpost knows only 64-bit device-table layouts (a 32-bit
    # of_device_id table is FATAL); the table only feeds module aliases, and the lab insmods.
    [ "$drop_device_table" = 0 ] || sed -i '/^MODULE_DEVICE_TABLE(/d' "$mod/uio_pdrv_genirq.c"
    echo 'obj-m := uio_pdrv_genirq.o' > "$mod/Kbuild"
    make -s -C "$headers" M="$mod" ARCH="$kernel_arch" CROSS_COMPILE="$triple-" modules >"$mod/build.log" 2>&1 \
      || { tail -20 "$mod/build.log" >&2; die "building uio_pdrv_genirq.ko failed (log: $mod/build.log)"; }
    cp "$mod/uio_pdrv_genirq.ko" "$kernel/modules/"
  fi
  stage="$kernel/cpio"; rm -rf "$stage"; mkdir -p "$stage/lab/modules"
  # (amd64 has no module: its archive holds the empty directory.)
  find "$kernel/modules" -name '*.ko' -exec cp -t "$stage/lab/modules/" {} +
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1 > "$kernel/modules.cpio.gz")
  rm -rf "$kernel/x" "$kernel/debs" "$stage"
  touch "$kernel/done"
fi

# ---- stage: QEMU from backports (arm64 and armhf; keyed by its version and the binaries kept) ----
# QEMU 7.2's TCG faults on LPAE page-table walks above 4 GiB (a 32-bit guest
# with RAM there dies at /init); 10.0 from backports does not. 10.0's virtio
# devices also take in_order=on (VIRTIO_F_IN_ORDER), which 7.2 lacks: the
# arm64 lab's in-order boot (test/lab/in-order.test.ts). One qemu-system-arm
# package holds both binaries; they need no host library beyond 7.2's. Unpacked
# beside the host's 7.2 (which every other boot keeps), never installed; one
# stage shared by both guests.
qemu=""
if [ "$qemu_backport" = 1 ]; then
  bpo="$cache/apt-backports"
  apt_bpo=(-o Dir::Etc::SourceList="$bpo/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$bpo/lists"
    -o Dir::Cache="$bpo/cache" -o APT::Architectures::=amd64 -o APT::Sandbox::User=root)
  if [ -z "$(find "$bpo/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
    mkdir -p "$bpo/lists/partial" "$bpo/cache/archives/partial"
    echo "deb http://deb.debian.org/debian $suite-backports main" > "$bpo/sources.list"
    apt-get "${apt_bpo[@]}" update -qq || die "apt-get update of $suite-backports failed"
  fi
  qemu_version="$(apt-cache "${apt_bpo[@]}" policy qemu-system-arm | sed -n 's/ *Candidate: //p')"
  case "$qemu_version" in *bpo*) ;; *) die "$suite-backports offers no qemu-system-arm (candidate: '$qemu_version')" ;; esac
  qemu_bins=(qemu-system-arm qemu-system-aarch64)
  qemu="$cache/qemu-bpo-$(echo "$qemu_version ${qemu_bins[*]}" | hash_of)"
  if [ ! -f "$qemu/done" ]; then
    say "qemu: $qemu_version from $suite-backports ($(elapsed))"
    # Older versions, and the armhf-only stage that kept qemu-system-arm alone.
    for d in "$cache"/qemu-bpo-* "$cache"/qemu-armhf-*; do [ ! -e "$d" ] || [ "$d" = "$qemu" ] || rm -rf "$d"; done
    rm -rf "$qemu"; mkdir -p "$qemu/debs"
    (cd "$qemu/debs" && apt-get "${apt_bpo[@]}" download -qq "qemu-system-arm=$qemu_version" >/dev/null) \
      || die "apt-get download of qemu-system-arm=$qemu_version failed"
    dpkg -x "$qemu"/debs/*.deb "$qemu/x"
    for b in "${qemu_bins[@]}"; do
      cp "$qemu/x/usr/bin/$b" "$qemu/" || die "the qemu-system-arm package has no $b"
      "$qemu/$b" --version >/dev/null || die "the unpacked $b does not run (missing host libraries?)"
    done
    rm -rf "$qemu/x" "$qemu/debs"
    touch "$qemu/done"
  fi
fi

# ---- stage: guest rootfs (keyed by the guest's package versions) ----
if [ "$deb_arch" = "$(dpkg --print-architecture)" ]; then
  # The host's own arch: its apt may also know third-party suites (e.g. a newer
  # nodejs); mmdebstrap gets Debian's suites only (below), so key on their newest.
  versions="$(for p in ${guest_pkgs//,/ }; do apt-cache madison "$p" | awk -F ' [|] ' -v s="$suite" '$3 ~ (" " s "(-updates|-security)?/main ") { print $2; exit }'; done | tr '\n' ' ')"
else
  versions="$(for p in ${guest_pkgs//,/ }; do apt-cache policy "$p:$deb_arch" | sed -n 's/ *Candidate: //p'; done | tr '\n' ' ')"
fi
rootfs="$cache/rootfs-$tag$(echo "$suite $guest_pkgs $versions" | hash_of)"
if [ ! -f "$rootfs/done" ]; then
  is_root || die "building the guest rootfs needs root (mmdebstrap extract keeps file ownership)"
  say "rootfs: mmdebstrap $guest_pkgs ($versions) ($(elapsed))"
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  tree="$rootfs/tree"
  # The suites whose $deb_arch index apt has (the versions above came from them): a
  # suite whose index a mirror serves broken (mid-sync) would fail mmdebstrap's update.
  mapfile -t sources < <(apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT)' "Created-By: Packages" "Architecture: $deb_arch" \
    | awk -v s="$suite" '$2 ~ "^" s "(-updates|-security)?$" && $3 == "main" { print "deb " $1 " " $2 " main" }' | sort -u)
  [ ${#sources[@]} -gt 0 ] || die "apt has no $suite index for $deb_arch"
  mmdebstrap --quiet --variant=extract --arch="$deb_arch" --include="$guest_pkgs" "$suite" "$tree" "${sources[@]}" >"$rootfs/mmdebstrap.log" 2>&1 \
    || { tail -20 "$rootfs/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $rootfs/mmdebstrap.log)"; }
  rm -rf "$tree/usr/share/doc" "$tree/usr/share/man" "$tree/usr/share/locale" "$tree/var/cache/apt" "$tree/var/lib/apt/lists"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1 > "$rootfs/base.cpio.gz")
  rm -rf "$tree"
  touch "$rootfs/done"
fi

# ---- stage: the addon for the guest (keyed by its sources) ----
addon_key="$( (cat "$root/binding.gyp" "$root"/native/*.cc "$root"/native/*.h; node -p "require('$root/node_modules/node-addon-api/package.json').version") | hash_of)"
addon="$cache/addon-$deb_arch-$addon_key"
if [ "$host_addon" = 1 ]; then
  # The host's own build (npm ci / npm run build made it): same arch, same
  # Debian glibc and libstdc++ as the guest; Node-API 8, so the guest's Node 18 loads it.
  host_build="$root/build/Release/virtio_mmio.node"
  [ -f "$host_build" ] || die "no host addon build at $host_build: npm run build"
  for f in "$root/binding.gyp" "$root"/native/*.cc "$root"/native/*.h; do
    [ "$f" -ot "$host_build" ] || { say "warning: $f is newer than $host_build (npm run build if native/ changed)"; break; }
  done
  readelf -h "$host_build" | grep -Eq "Machine:[[:space:]]+$elf_machine\$" || die "$host_build is not $elf_machine"
  addon_key="$( (echo "$addon_key"; hash_of < "$host_build") | hash_of)"
  addon="$cache/addon-$deb_arch-$addon_key"
  if [ ! -f "$addon/virtio_mmio.node" ]; then
    rm -rf "$cache/addon-$deb_arch-"*
    mkdir -p "$addon"
    cp "$host_build" "$addon/"
  fi
elif [ ! -f "$addon/virtio_mmio.node" ]; then
  say "addon: cross-building for $deb_arch ($(elapsed))"
  build="$cache/addon-build"; rm -rf "$build"; mkdir -p "$build"
  cp -a "$root/binding.gyp" "$root/native" "$build/"
  node_prefix="$(dirname "$(dirname "$(command -v node)")")"
  nodedir_args=()
  [ -f "$node_prefix/include/node/node_api.h" ] && nodedir_args=(--nodedir="$node_prefix")
  (cd "$build" && CC="$triple-gcc" CXX="$triple-g++" LINK="$triple-g++" \
    "$root/node_modules/.bin/node-gyp" rebuild --arch="$node_arch" "${nodedir_args[@]}" >"$build/build.log" 2>&1) \
    || { tail -20 "$build/build.log" >&2; die "cross-building the addon failed (log: $build/build.log)"; }
  out="$build/build/Release/virtio_mmio.node"
  readelf -h "$out" | grep -Eq "Machine:[[:space:]]+$elf_machine\$" || die "the cross-built addon is not $elf_machine"
  for attr in "${elf_attributes[@]}"; do
    readelf -A "$out" | grep -Eq "$attr" || die "the cross-built addon's attributes show no '$attr'"
  done
  mkdir -p "$addon"
  cp "$out" "$addon/"
  rm -rf "$build"
fi

# ---- stage: the library for the guest (keyed by its sources; seconds) ----
lib_key="$( (cd "$root" && find lib test/support/contracts scripts/lab/guest scripts/lab/init.sh scripts/lab/tsconfig.guest.json bench/floor bench/null-blk.js bench/args.js bench/stats.js -type f | sort | xargs cat; echo "$addon_key"; node -p "require('$root/node_modules/node-gyp-build/package.json').version"; [ -z "$tag" ] || echo "$deb_arch") | hash_of)"
library="$cache/library-$tag$lib_key"
if [ ! -f "$library/done" ]; then
  say "library: compiling for the guest ($(elapsed))"
  rm -rf "$library"
  stage="$library/stage"; app="$stage/opt/virtio-mmio"
  # The package's layout: the addon as its prebuild (scripts/build/prebuilds.sh's name), found by node-gyp-build; no build/ and no compiler in the guest.
  mkdir -p "$app/prebuilds/$(dirname "$prebuild")" "$app/node_modules" "$stage/lab"
  "$root/node_modules/.bin/tsc" -p "$root/scripts/lab/tsconfig.guest.json" --outDir "$app" \
    || die "compiling the library for the guest failed"
  printf '{ "name": "virtio-mmio-lab", "private": true }\n' > "$app/package.json"
  cp -a "$root/node_modules/node-gyp-build" "$app/node_modules/"
  cp "$addon/virtio_mmio.node" "$app/prebuilds/$prebuild"
  [ ! -e "$app/build" ] || die "the guest must load its prebuild, not a build/ directory"
  if [ "$bench_floor" = 1 ]; then
    # The C floor under the blk benchmark (bench/lab-vs-kernel.js), static: no guest libc to match.
    mkdir -p "$app/bench"
    "$triple-gcc" -O2 -Wall -Wextra -static -o "$app/bench/blk-floor" "$root/bench/floor/blk-floor.c" \
      || die "cross-compiling bench/floor/blk-floor.c failed"
    # The library alone (bench/null-blk.js), run in the guest as on the host: it loads ../dist, here the guest's lib.
    cp "$root/bench/null-blk.js" "$root/bench/args.js" "$root/bench/stats.js" "$app/bench/"
    ln -s lib "$app/dist"
  fi
  install -m 0755 "$root/scripts/lab/init.sh" "$stage/init"
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1 > "$library/library.cpio.gz")
  rm -rf "$stage"
  touch "$library/done"
  # Older builds go only once this one is complete: a source tree that does not compile leaves the last good build in place.
  stale library- "$library"
fi

# The parts a boot concatenates (Linux unpacks each cpio archive in turn).
ready="$cache/$ready_dir"
mkdir -p "$ready"
ln -sfn "$kernel/vmlinuz" "$ready/vmlinuz"
ln -sfn "$rootfs/base.cpio.gz" "$ready/1-base.cpio.gz"
ln -sfn "$kernel/modules.cpio.gz" "$ready/2-modules.cpio.gz"
ln -sfn "$library/library.cpio.gz" "$ready/3-library.cpio.gz"
# run.js boots with this QEMU when present.
if [ -n "$qemu" ]; then ln -sfn "$qemu" "$ready/qemu"; else rm -f "$ready/qemu"; fi
say "done in $(elapsed)"
echo "lab ready: $ready"
