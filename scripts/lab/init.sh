#!/bin/busybox sh
# /init of the lab guest: mount, load UIO for every virtio-mmio transport,
# reserve hugepages, run /lab/cmd from the library's directory, report its
# exit status on the console, power off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mkdir -p /usr/local/bin
/bin/busybox --install -s /usr/local/bin
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
# (The amd64 microvm has no UIO module: its transports stay unbound, for /dev/mem.)
if [ -f /lab/modules/uio_pdrv_genirq.ko ]; then
  insmod /lab/modules/uio.ko
  insmod /lab/modules/uio_pdrv_genirq.ko of_id=virtio,mmio
fi
echo 32 > /proc/sys/vm/nr_hugepages
cd /opt/virtio-mmio
echo "@@LAB-READY"
sh /lab/cmd
echo "@@LAB-EXIT $?"
# x86 without ACPI (the microvm) cannot power off: the kernel would halt and
# QEMU run on. A reboot (reboot=t on its command line) ends a -no-reboot QEMU.
if [ "$(uname -m)" = x86_64 ] && [ ! -d /sys/firmware/acpi ]; then reboot -f; fi
poweroff -f
