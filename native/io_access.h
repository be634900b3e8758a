// Volatile MMIO accessors and barriers with the semantics of Linux's
// readX/writeX and mb/rmb/wmb/dma_rmb/dma_wmb
// (arch/arm64/include/asm/io.h, asm/barrier.h; arch/arm/include/asm/io.h,
// asm/barrier.h; arch/x86/include/asm/barrier.h).
//
// arm64: every access is a single plain ldr/str without writeback, written
// in inline asm so that a hypervisor trapping the access (KVM, QEMU) gets a
// valid syndrome and can emulate it. A read is load then `dmb oshld`; a write
// is `dmb oshst` then store. mb/rmb/wmb are the DSB forms, as in Linux.
// 32-bit ARM, ARMv7-A and later (armhf): the same single plain accesses, for
// the same reason. Linux's arm readX/writeX put rmb()/wmb() around the access
// (__iormb/__iowmb), and those are DSBs: a read is load then `dsb sy`; a write
// is `dsb st` then store. mb is `dsb sy`, rmb `dsb sy`, wmb `dsb st`, dma_rmb
// `dmb osh`, dma_wmb `dmb oshst` (the kernel's forms for ARMv7 with DMA
// memory bufferable or SMP, as every multi-platform v7 kernel is; its outer
// cache sync after a DSB is kernel-only and has no user-space form).
// x86-64: MMIO is uncached and strongly ordered, so readX/writeX need only a
// compiler barrier; mb/rmb/wmb are mfence/lfence/sfence; dma_* are compiler
// barriers.
#pragma once

#include <cstdint>

namespace virtio_mmio {

inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// ARMv7-A or later in AArch32 state. Older ARM (v6: DSB is a CP15 operation,
// not an instruction) takes the generic path below.
#if defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7 && defined(__ARM_ARCH_PROFILE) && \
    __ARM_ARCH_PROFILE == 'A'
#define VIRTIO_MMIO_ARM32 1
#endif

// Which of the barrier sets below this build uses; the addon exports it as
// `barrierKind` so a test on a real machine can check which one ran.
#if defined(__aarch64__)
inline constexpr const char kBarrierKind[] = "arm64";
inline void barrier_mb() { asm volatile("dsb sy" ::: "memory"); }
inline void barrier_rmb() { asm volatile("dsb ld" ::: "memory"); }
inline void barrier_wmb() { asm volatile("dsb st" ::: "memory"); }
inline void barrier_dma_rmb() { asm volatile("dmb oshld" ::: "memory"); }
inline void barrier_dma_wmb() { asm volatile("dmb oshst" ::: "memory"); }

inline uint8_t raw_read8(const volatile void* p) {
  uint8_t v;
  asm volatile("ldrb %w0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline uint16_t raw_read16(const volatile void* p) {
  uint16_t v;
  asm volatile("ldrh %w0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline uint32_t raw_read32(const volatile void* p) {
  uint32_t v;
  asm volatile("ldr %w0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline void raw_write8(volatile void* p, uint8_t v) {
  asm volatile("strb %w0, [%1]" : : "rZ"(v), "r"(p));
}
inline void raw_write16(volatile void* p, uint16_t v) {
  asm volatile("strh %w0, [%1]" : : "rZ"(v), "r"(p));
}
inline void raw_write32(volatile void* p, uint32_t v) {
  asm volatile("str %w0, [%1]" : : "rZ"(v), "r"(p));
}
#elif defined(VIRTIO_MMIO_ARM32)
// `dsb sy` is what a bare `dsb` (Linux's dsb()) assembles to.
inline constexpr const char kBarrierKind[] = "armv7";
inline void barrier_mb() { asm volatile("dsb sy" ::: "memory"); }
inline void barrier_rmb() { asm volatile("dsb sy" ::: "memory"); }
inline void barrier_wmb() { asm volatile("dsb st" ::: "memory"); }
inline void barrier_dma_rmb() { asm volatile("dmb osh" ::: "memory"); }
inline void barrier_dma_wmb() { asm volatile("dmb oshst" ::: "memory"); }

// [reg] addressing only: no writeback, so a trapped access carries a valid
// syndrome (ARM or Thumb-2 encoding alike).
inline uint8_t raw_read8(const volatile void* p) {
  uint8_t v;
  asm volatile("ldrb %0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline uint16_t raw_read16(const volatile void* p) {
  uint16_t v;
  asm volatile("ldrh %0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline uint32_t raw_read32(const volatile void* p) {
  uint32_t v;
  asm volatile("ldr %0, [%1]" : "=r"(v) : "r"(p));
  return v;
}
inline void raw_write8(volatile void* p, uint8_t v) {
  asm volatile("strb %0, [%1]" : : "r"(v), "r"(p));
}
inline void raw_write16(volatile void* p, uint16_t v) {
  asm volatile("strh %0, [%1]" : : "r"(v), "r"(p));
}
inline void raw_write32(volatile void* p, uint32_t v) {
  asm volatile("str %0, [%1]" : : "r"(v), "r"(p));
}
#else
#if defined(__x86_64__) || defined(__i386__)
inline constexpr const char kBarrierKind[] = "x86";
inline void barrier_mb() { asm volatile("mfence" ::: "memory"); }
inline void barrier_rmb() { asm volatile("lfence" ::: "memory"); }
inline void barrier_wmb() { asm volatile("sfence" ::: "memory"); }
inline void barrier_dma_rmb() { compiler_barrier(); }
inline void barrier_dma_wmb() { compiler_barrier(); }
#else
// Other architectures (ARMv6, RISC-V, POWER, ...): full thread fences. Not
// tuned, and not checked against each architecture's device-ordering rules.
inline constexpr const char kBarrierKind[] = "fences";
inline void barrier_mb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void barrier_rmb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void barrier_wmb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void barrier_dma_rmb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void barrier_dma_wmb() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#endif
inline uint8_t raw_read8(const volatile void* p) { return *static_cast<const volatile uint8_t*>(p); }
inline uint16_t raw_read16(const volatile void* p) { return *static_cast<const volatile uint16_t*>(p); }
inline uint32_t raw_read32(const volatile void* p) { return *static_cast<const volatile uint32_t*>(p); }
inline void raw_write8(volatile void* p, uint8_t v) { *static_cast<volatile uint8_t*>(p) = v; }
inline void raw_write16(volatile void* p, uint16_t v) { *static_cast<volatile uint16_t*>(p) = v; }
inline void raw_write32(volatile void* p, uint32_t v) { *static_cast<volatile uint32_t*>(p) = v; }
#endif

// Read: volatile load, then the read barrier that orders it before later
// loads of DMA memory (Linux __iormb).
#if defined(__aarch64__)
inline void io_rmb() { barrier_dma_rmb(); }
inline void io_wmb() { barrier_dma_wmb(); }
#elif defined(VIRTIO_MMIO_ARM32)
// Linux arm: __iormb() is rmb() and __iowmb() is wmb(), both DSBs.
inline void io_rmb() { barrier_rmb(); }
inline void io_wmb() { barrier_wmb(); }
#elif defined(__x86_64__) || defined(__i386__)
inline void io_rmb() { compiler_barrier(); }
inline void io_wmb() { compiler_barrier(); }
#else
// Weakly ordered and unknown: a compiler barrier alone would let the CPU
// reorder DMA memory accesses around the register access.
inline void io_rmb() { barrier_rmb(); }
inline void io_wmb() { barrier_wmb(); }
#endif

template <typename T> inline T io_read(const volatile void* p);
template <> inline uint8_t io_read<uint8_t>(const volatile void* p) { uint8_t v = raw_read8(p); io_rmb(); return v; }
template <> inline uint16_t io_read<uint16_t>(const volatile void* p) { uint16_t v = raw_read16(p); io_rmb(); return v; }
template <> inline uint32_t io_read<uint32_t>(const volatile void* p) { uint32_t v = raw_read32(p); io_rmb(); return v; }

// Write: the write barrier that orders earlier stores to DMA memory before
// the device sees this store (Linux __iowmb), then the volatile store.
template <typename T> inline void io_write(volatile void* p, T v);
template <> inline void io_write<uint8_t>(volatile void* p, uint8_t v) { io_wmb(); raw_write8(p, v); }
template <> inline void io_write<uint16_t>(volatile void* p, uint16_t v) { io_wmb(); raw_write16(p, v); }
template <> inline void io_write<uint32_t>(volatile void* p, uint32_t v) { io_wmb(); raw_write32(p, v); }

}  // namespace virtio_mmio
