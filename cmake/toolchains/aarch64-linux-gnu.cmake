# Cross-compiling the addon for 64-bit ARM Linux (AArch64).
#
#   npx cmake-js compile --out build-cmake-aarch64 \
#     --CDCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   (plain CMake: cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=... -DNODE_INCLUDE_DIR=...)
#
# By default Debian's cross compiler (apt-get install g++-aarch64-linux-gnu, a
# host package) with the target's libc in /usr/aarch64-linux-gnu. Another
# toolchain, from the environment:
#   CROSS_COMPILE   the compilers' prefix, on PATH or with its directory:
#                   Yocto SDK aarch64-poky-linux- (its environment-setup
#                   script exports it), Buildroot
#                   <output>/host/bin/aarch64-buildroot-linux-gnu-
#   CROSS_SYSROOT   the target's headers and libraries: Yocto SDK
#                   $SDKTARGETSYSROOT (used when CROSS_SYSROOT is unset),
#                   Buildroot <output>/staging ($(STAGING_DIR))
#   CROSS_TARGET_FLAGS  flags the compiler always needs for the target, as
#                   a Yocto SDK's $CC carries them (-mcpu=..., -mfloat-abi=...);
#                   kept with the compiler, since cmake-js sets CMAKE_CXX_FLAGS
# Inside a recipe, Yocto's cmake class and Buildroot's cmake-package pass
# their own toolchain file, which does what this one does; CMakeLists.txt
# then finds node_api.h in the sysroot (the nodejs recipe's headers).
#
# The Node headers come from the build machine (cmake-js: npm's nodedir):
# Node-API's headers and uv.h are the same on every architecture.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(DEFINED ENV{CROSS_COMPILE} AND NOT "$ENV{CROSS_COMPILE}" STREQUAL "")
  set(cross_prefix "$ENV{CROSS_COMPILE}")
else()
  set(cross_prefix aarch64-linux-gnu-)
endif()
separate_arguments(target_flags UNIX_COMMAND "$ENV{CROSS_TARGET_FLAGS}")
set(CMAKE_C_COMPILER "${cross_prefix}gcc" ${target_flags})
set(CMAKE_CXX_COMPILER "${cross_prefix}g++" ${target_flags})

if(DEFINED ENV{CROSS_SYSROOT} AND NOT "$ENV{CROSS_SYSROOT}" STREQUAL "")
  set(CMAKE_SYSROOT "$ENV{CROSS_SYSROOT}")
elseif(DEFINED ENV{SDKTARGETSYSROOT} AND NOT "$ENV{SDKTARGETSYSROOT}" STREQUAL "")
  set(CMAKE_SYSROOT "$ENV{SDKTARGETSYSROOT}")
else()
  # Debian's cross compiler needs no --sysroot; find_* look here (and in
  # any -DCMAKE_FIND_ROOT_PATH=... given).
  list(APPEND CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
endif()

# Programs (node, to locate node-addon-api) from the build machine; headers,
# libraries and packages from the target only.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
