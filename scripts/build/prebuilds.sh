#!/usr/bin/env bash
# Builds the prebuilt addons the npm package ships, so that a linux-x64,
# linux-arm64 or linux-arm (armv7, hard-float) machine installs without a
# compiler: the host's compiler for the host's architecture, the cross
# compilers for the others (node-gyp with CC/CXX/LINK set and --arch, as
# scripts/lab/prepare.sh does for the lab). Each is stripped, checked with
# readelf (class and machine; arm: ARMv7, hard-float ABI; a Node-API module)
# and placed where node-gyp-build looks:
#
#   prebuilds/linux-x64/node.napi.glibc.node
#   prebuilds/linux-arm64/node.napi.armv8.glibc.node
#   prebuilds/linux-arm/node.napi.armv7.glibc.node
#
# (prebuildify's names: runtime "node"; "napi": Node-API 8 makes one binary
# per architecture for every Node version; then the armv and libc tags. An
# armv6 or a musl machine matches none and builds from source at install.)
#
#   scripts/build/prebuilds.sh [--out DIR]            (default: <repo>/prebuilds)
#   scripts/build/prebuilds.sh --check [--out DIR]
#
# --check builds nothing: it checks that DIR holds exactly these three, each
# as above (npm publish runs it, so the package never ships without them).
#
# Builds binding.gyp and native/ of the working tree in a temporary copy
# (no bench addon; build/ is neither used nor touched), against the
# machine's Node headers (npm's nodedir, as .ci/run sets it: never a
# download). Needs g++, make, python3, binutils and the host packages
# g++-aarch64-linux-gnu and g++-arm-linux-gnueabihf (never an :arm64 or
# :armhf package). prebuilds/ is a build output (.gitignore); npm pack ships it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/prebuilds"
check_only=0

die() { echo "prebuilds: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --check) check_only=1; shift ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (usage: scripts/build/prebuilds.sh [--check] [--out DIR])" ;;
  esac
done

command -v readelf >/dev/null || die "readelf not found: apt-get install binutils"

# node arch | GNU triple | prebuild file | what `readelf -h` must show | what `readelf -A` must show
targets=(
  "x64|x86_64-linux-gnu|linux-x64/node.napi.glibc.node|Class:[[:space:]]+ELF64;Machine:[[:space:]]+Advanced Micro Devices X86-64|"
  "arm64|aarch64-linux-gnu|linux-arm64/node.napi.armv8.glibc.node|Class:[[:space:]]+ELF64;Machine:[[:space:]]+AArch64|"
  "arm|arm-linux-gnueabihf|linux-arm/node.napi.armv7.glibc.node|Class:[[:space:]]+ELF32;Machine:[[:space:]]+ARM;Flags:.*Version5 EABI, hard-float ABI|Tag_CPU_arch: v7;Tag_ABI_VFP_args: VFP registers"
)

# Every pattern of a ';'-separated list must be in a readelf listing.
expect() { # file what listing patterns
  local file="$1" what="$2" listing="$3" pattern
  local -a list
  [ -n "$4" ] || return 0
  IFS=';' read -ra list <<<"$4"
  for pattern in "${list[@]}"; do
    grep -Eq "$pattern" <<<"$listing" || { echo "$listing" >&2; die "$file: readelf $what shows no '$pattern'"; }
  done
}

# The newest symbol version a binary needs with a prefix (GLIBC_, GLIBCXX_).
newest() { # file prefix
  local versions
  versions="$(readelf -V --wide "$1")"
  grep -Eo "Name: $2[0-9.]+" <<<"$versions" | sed "s/Name: $2//" | sort -t. -k1,1n -k2,2n -k3,3n | tail -1 || true
}

check() { # file header-patterns attribute-patterns
  [ -f "$1" ] || die "$1 is missing (scripts/build/prebuilds.sh builds it)"
  expect "$1" "-h" "$(readelf -h "$1")" "$2"
  expect "$1" "-A" "$(readelf -A "$1")" "$3"
  expect "$1" "--dyn-syms" "$(readelf --dyn-syms --wide "$1")" '[[:space:]]napi_register_module_v1$'
  printf '   %s: %s bytes, needs GLIBC_%s GLIBCXX_%s\n' "${1#"$out"/}" "$(stat -c %s "$1")" \
    "$(newest "$1" GLIBC_)" "$(newest "$1" GLIBCXX_)"
}

# $out must hold these three and no other addon (npm pack ships all of prebuilds/).
check_all() {
  local entry file header attributes extra
  [ -d "$out" ] || die "no $out: run scripts/build/prebuilds.sh first"
  for entry in "${targets[@]}"; do
    IFS='|' read -r _ _ file header attributes <<<"$entry"
    check "$out/$file" "$header" "$attributes"
  done
  extra="$(cd "$out" && find . -type f | sed 's|^\./||' | sort \
    | grep -Fxv -f <(for entry in "${targets[@]}"; do IFS='|' read -r _ _ file _ _ <<<"$entry"; echo "$file"; done) || true)"
  [ -z "$extra" ] || die "$out holds other files too, which npm pack would ship: $extra"
  (cd "$out" && find . -name '*.node' | sort | xargs sha256sum)
}

if [ "$check_only" = 1 ]; then
  echo "== checking the prebuilds in $out"
  check_all
  echo "== prebuilds: ok ($out)"
  exit 0
fi

node_gyp="$root/node_modules/.bin/node-gyp"
[ -x "$node_gyp" ] || die "node-gyp is not installed: npm ci first"
[ -d "$root/node_modules/node-addon-api" ] || die "node-addon-api is not installed: npm ci first"

# The machine's Node headers, never a download (as scripts/build/check-cmake-addon.sh).
if [ -z "${npm_config_nodedir:-}" ]; then
  nodedir="$(cd "$root" && npm config get nodedir 2>/dev/null || true)"
  case "$nodedir" in ''|undefined|null) nodedir="$(dirname "$(dirname "$(command -v node)")")" ;; esac
  export npm_config_nodedir="$nodedir"
fi
[ -f "$npm_config_nodedir/include/node/node_api.h" ] \
  || die "no Node headers in $npm_config_nodedir/include/node (set npm_config_nodedir): node-gyp would download them"

# The compilers of a target: the host's own for the host's architecture.
host_arch="$(node -p process.arch)"
tools_for() { # arch triple -> sets cc cxx strip
  if [ "$1" = "$host_arch" ]; then
    cc=gcc; cxx=g++; strip=strip
  else
    cc="$2-gcc"; cxx="$2-g++"; strip="$2-strip"
  fi
}

missing=()
for entry in "${targets[@]}"; do
  IFS='|' read -r arch triple _ _ _ <<<"$entry"
  tools_for "$arch" "$triple"
  for tool in "$cc" "$cxx" "$strip"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
done
command -v make >/dev/null || missing+=(make)
command -v python3 >/dev/null || missing+=(python3)
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: apt-get install g++ make python3 g++-aarch64-linux-gnu g++-arm-linux-gnueabihf (host packages, never :arm64 or :armhf)"

work="$(cd "$(mktemp -d "${TMPDIR:-/tmp}/prebuilds.XXXXXX")" && pwd -P)"
trap 'rm -rf "$work"' EXIT

staged="$work/prebuilds"
for entry in "${targets[@]}"; do
  IFS='|' read -r arch triple file _ _ <<<"$entry"
  tools_for "$arch" "$triple"
  src="$work/src-$arch"
  mkdir -p "$src"
  # What an install builds from source: binding.gyp and native/ (no bench/, so no bench addon).
  cp -a "$root/binding.gyp" "$root/native" "$src/"
  ln -s "$root/node_modules" "$src/node_modules"
  echo "== $arch: node-gyp rebuild --arch=$arch with $cxx (Node headers from $npm_config_nodedir)"
  (cd "$src" && CC="$cc" CXX="$cxx" LINK="$cxx" \
    "$node_gyp" rebuild --arch="$arch" --nodedir="$npm_config_nodedir" --jobs "${JOBS:-2}" >"$work/$arch.log" 2>&1) \
    || { tail -30 "$work/$arch.log" >&2; die "the $arch build failed"; }
  built="$src/build/Release/virtio_mmio.node"
  [ -f "$built" ] || die "the $arch build made no $built"
  others="$(cd "$src/build/Release" && ls -- *.node | grep -vx 'virtio_mmio\.node' || true)"
  [ -z "$others" ] || die "the $arch build made other addons too: $others"
  mkdir -p "$staged/$(dirname "$file")"
  "$strip" --strip-unneeded -o "$staged/$file" "$built"
  echo "   built $(stat -c %s "$built") bytes, stripped $(stat -c %s "$staged/$file")"
done

# Replace the tuple directories this script owns, then check what is there.
mkdir -p "$out"
for entry in "${targets[@]}"; do
  IFS='|' read -r _ _ file _ _ <<<"$entry"
  tuple="${file%%/*}"
  rm -rf "${out:?}/$tuple"
  cp -a "$staged/$tuple" "$out/"
done
echo "== checking the prebuilds in $out"
check_all
echo "== prebuilds: ok ($out)"
