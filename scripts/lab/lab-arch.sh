# The facts prepare.sh needs per guest architecture (sourced by prepare.sh).
# run.js holds the boot side (QEMU binary, CPU, memory, ready dir) to match.
# `tag` prefixes the armhf and amd64 stages' cache names; arm64's names
# predate it. `host_pkgs` are the host's (never a foreign-arch package);
# `uio_module` says whether the guest gets the out-of-tree uio_pdrv_genirq.ko
# (and so needs the kernel headers); `host_addon` takes the host's own
# build (build/Release) instead of a cross-built one.

# Removes older stages named <prefix>* of this arch only (never $keep).
stale() { # prefix keep
  local d
  for d in "$cache/$1$tag"*; do
    [ -e "$d" ] && [ "$d" != "$2" ] || continue
    # arm64's stages carry no tag: the armhf and amd64 ones are not arm64's to remove.
    [ -z "$tag" ] && [[ "$(basename "$d")" == "$1"armhf-* || "$(basename "$d")" == "$1"amd64-* ]] && continue
    rm -rf "$d"
  done
}

lab_arch() { # arm64 | armhf | amd64
  uio_module=1 host_addon=0
  case "$1" in
    arm64)
      deb_arch=arm64 flavour=arm64 kernel_meta=linux-image-arm64 kernel_arch=arm64
      triple=aarch64-linux-gnu node_arch=arm64 elf_machine=AArch64 elf_attributes=()
      prebuild=linux-arm64/node.napi.armv8.glibc.node
      guest_pkgs="nodejs,busybox-static,fio" bench_floor=1 tag='' ready_dir=ready drop_device_table=0 qemu_backport=1
      host_pkgs=(qemu-system-arm qemu-system-data "gcc-$triple" "g++-$triple" mmdebstrap cpio xz-utils make binutils linux-source-6.1 linux-kbuild-6.1)
      # uio for our driver; the kernel's own virtio drivers for side-by-side
      # checks and benchmarks (virtio and virtio_ring are built in).
      kernel_modules=(
        drivers/uio/uio.ko
        drivers/virtio/virtio_mmio.ko
        drivers/block/virtio_blk.ko
        drivers/char/hw_random/virtio-rng.ko
        net/core/failover.ko
        drivers/net/net_failover.ko
        drivers/net/virtio_net.ko
      )
      ;;
    armhf)
      # armmp-lpae: LPAE, so RAM (and DMA buffers) can sit above 4 GiB physical.
      # Only what the contract suites need: no fio, no kernel virtio drivers, no benchmark.
      deb_arch=armhf flavour=armmp-lpae kernel_meta=linux-image-armmp-lpae kernel_arch=arm
      triple=arm-linux-gnueabihf node_arch=arm elf_machine=ARM
      elf_attributes=('Tag_CPU_arch: v7' 'Tag_ABI_VFP_args: VFP registers')
      prebuild=linux-arm/node.napi.armv7.glibc.node
      guest_pkgs="nodejs,busybox-static" bench_floor=0 tag=armhf- ready_dir=ready-armhf drop_device_table=1 qemu_backport=1
      host_pkgs=(qemu-system-arm qemu-system-data "gcc-$triple" "g++-$triple" mmdebstrap cpio xz-utils make binutils linux-source-6.1 linux-kbuild-6.1)
      kernel_modules=(drivers/uio/uio.ko)
      ;;
    amd64)
      # The Firecracker shape: -M microvm, no UIO, devices from the kernel
      # command line reached through /dev/mem. The host's own arch: no cross
      # compiler, no foreign apt architecture, the addon of build/Release.
      deb_arch=amd64 flavour=amd64 kernel_meta=linux-image-amd64 kernel_arch=x86_64
      triple=x86_64-linux-gnu node_arch=x64 elf_machine='Advanced Micro Devices X86-64' elf_attributes=()
      prebuild=linux-x64/node.napi.glibc.node
      guest_pkgs="nodejs,busybox-static" bench_floor=0 tag=amd64- ready_dir=ready-amd64 drop_device_table=0 qemu_backport=0
      host_pkgs=(qemu-system-x86 qemu-system-data mmdebstrap cpio)
      uio_module=0 host_addon=1
      # No module: nothing in the guest binds the transports.
      kernel_modules=()
      ;;
    *) return 1 ;;
  esac
}
