// The store an armed register window makes when its environment (the main
// thread or a worker) tears down: for a virtio-mmio device, Status ← 0 (virtio
// 1.2 §2.4), so a worker that is terminated — and so runs no JavaScript at its
// end — leaves no device DMAing into memory the kernel takes back.
//
// An env cleanup hook does it. At the teardown of a worker (however it ends)
// or of the main thread whose event loop ran dry, Node runs the finalizers of
// external ArrayBuffer backing stores, then the env cleanup hooks (newest
// first), then the finalizers of napi_wrap and napi_add_finalizer
// (test/native/teardown-order.test.ts holds Node to it). DMA memory is
// unmapped by the last of its holders, and the DmaMemory wrapper and its
// ArrayBuffer object are among them, so the store lands while that memory is
// still mapped. process.exit() on the main thread tears nothing down (no hook
// runs); the library's 'exit' listener resets the devices there.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>

namespace virtio_mmio {

struct RegionWindow;

// Part of RegionWindow; the hot accessors never read it.
struct ExitWrite {
  // The hook is registered with the window as its argument and holds the
  // window (RegionWindow::holders) until it runs or is removed.
  bool registered = false;
  // The hook writes only when armed (a removal that failed leaves it registered, disarmed).
  bool armed = false;
  size_t offset = 0;
  uint32_t value = 0;
  // After the store, how long the hook reads the register back waiting for `value`.
  uint32_t poll_ms = 0;
};

// Arms `w`: at env teardown, a 32-bit store of `value` at `offset` (writel's
// barrier semantics) if the window is still mapped, then up to `poll_ms` of
// reads until the register reads `value`. Arming again replaces the store.
// The caller has checked `offset` (in the window, aligned) and holds `w`.
napi_status ArmExitWrite(napi_env env, RegionWindow* w, size_t offset, uint32_t value, uint32_t poll_ms);

// Forgets the store (idempotent); never throws.
void DisarmExitWrite(napi_env env, RegionWindow* w);

}  // namespace virtio_mmio
