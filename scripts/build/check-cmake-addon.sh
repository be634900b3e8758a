#!/usr/bin/env bash
# Builds the addon with cmake-js from CMakeLists.txt in a temporary copy of
# the repository and runs the addon's tests there against it; then
# cross-builds it with each toolchain file in cmake/toolchains/ whose
# compiler is installed and checks the result's ELF header. The addon
# node-gyp built in build/ is neither used nor touched.
#
#   scripts/build/check-cmake-addon.sh [jest arguments]
#
# Jest runs test/native and test/platform (the addon's own tests) unless
# given other arguments. The copy holds the working tree's files, not only
# what is committed, and borrows node_modules (npm ci first). Needs cmake
# (apt-get install cmake) and the machine's Node headers: cmake-js gets them
# from npm's nodedir, set here as .ci/run sets it, and would otherwise
# download them.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

die() { echo "check-cmake-addon: $*" >&2; exit 1; }

command -v cmake >/dev/null || die "cmake not found: apt-get install cmake"
[ -x "$root/node_modules/.bin/cmake-js" ] || die "cmake-js is not installed: npm ci first"

# The machine's Node headers, never a download.
if [ -z "${npm_config_nodedir:-}" ]; then
  nodedir="$(cd "$root" && npm config get nodedir 2>/dev/null || true)"
  case "$nodedir" in ''|undefined|null) nodedir="$(dirname "$(dirname "$(command -v node)")")" ;; esac
  export npm_config_nodedir="$nodedir"
fi
[ -f "$npm_config_nodedir/include/node/node_api.h" ] && [ -f "$npm_config_nodedir/include/node/uv.h" ] \
  || die "no Node headers in $npm_config_nodedir/include/node (set npm_config_nodedir): cmake-js would download them"

work="$(cd "$(mktemp -d "${TMPDIR:-/tmp}/check-cmake-addon.XXXXXX")" && pwd -P)"
trap 'rm -rf "$work"' EXIT

# The working tree without what is built, installed or cached.
tar -C "$root" --anchored --exclude=./.git --exclude=./node_modules --exclude=./build \
  --exclude='./build-*' --exclude=./dist --exclude=./coverage --exclude=./.lab-cache \
  --exclude='./*.tgz' -cf - . | tar -C "$work" -xf -
ln -s "$root/node_modules" "$work/node_modules"

cmake_js() { (cd "$work" && ./node_modules/.bin/cmake-js compile --parallel 2 "$@"); }

echo "== cmake-js: host build ($work/build-cmake, Node headers from $npm_config_nodedir)"
cmake_js --out build-cmake >"$work/cmake-host.log" 2>&1 || { cat "$work/cmake-host.log"; die "the cmake-js build failed"; }
grep -E '^\[[0-9]+/[0-9]+\]|warning' "$work/cmake-host.log" || true

# Where `bindings` looks: build/Release, which node-gyp's build would have filled.
mkdir -p "$work/build/Release"
cp "$work"/build-cmake/Release/*.node "$work/build/Release/"
sha256sum "$work"/build/Release/*.node
loaded="$(cd "$work" && node -p "require('bindings')({ bindings: 'virtio_mmio', module_root: process.cwd(), path: true })")"
[ "$loaded" = "$work/build/Release/virtio_mmio.node" ] || die "bindings would load $loaded, not the cmake-js addon"

echo "== jest against the cmake-js addon: ${*:-test/native test/platform}"
if [ $# -eq 0 ]; then set -- test/native test/platform; fi
(cd "$work" && ./node_modules/.bin/jest "$@")

# name|toolchain file|what readelf -h must show
cross=(
  "aarch64-linux-gnu|cmake/toolchains/aarch64-linux-gnu.cmake|Machine:[[:space:]]+AArch64"
  "arm-linux-gnueabihf|cmake/toolchains/arm-linux-gnueabihf.cmake|Flags:.*Version5 EABI, hard-float ABI"
)
for entry in "${cross[@]}"; do
  IFS='|' read -r triple toolchain want <<<"$entry"
  if ! command -v "$triple-g++" >/dev/null; then
    echo "== cross build $triple: skipped, no $triple-g++ (apt-get install g++-$triple)"
    continue
  fi
  echo "== cross build $triple ($toolchain)"
  out="build-cmake-$triple"
  # CROSS_* would point the toolchain file elsewhere; this checks its defaults.
  (unset CROSS_COMPILE CROSS_SYSROOT CROSS_TARGET_FLAGS SDKTARGETSYSROOT
   cmake_js --out "$out" --CDCMAKE_TOOLCHAIN_FILE="$work/$toolchain") >"$work/$out.log" 2>&1 \
    || { cat "$work/$out.log"; die "the $triple cross build failed"; }
  for addon in "$work/$out"/Release/*.node; do
    if command -v file >/dev/null; then file -b "$addon"; fi
    readelf -h "$addon" | grep -Eq "$want" || { readelf -h "$addon"; die "$addon: readelf -h shows no '$want'"; }
  done
done
echo "== the cmake-js addon: ok"
