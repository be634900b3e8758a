#include "exit_write.h"

#include <time.h>
#include <unistd.h>

#include "io_access.h"
#include "mmio_region.h"

namespace virtio_mmio {

static uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// The env cleanup hook. No JavaScript runs and nothing may throw: a store, a
// bounded read-back, and the hook's hold on the window let go. A window closed
// since (close() removes the hook, so only if that removal failed) is not
// touched: its mapping is gone.
static void RunExitWrite(void* arg) {
  auto* w = static_cast<RegionWindow*>(arg);
  ExitWrite& x = w->exit_write;
  x.registered = false;
  if (x.armed && w->open) {
    uint8_t* reg = w->base + x.offset;
    io_write<uint32_t>(reg, x.value);
    // §2.4.1: a reset is complete when Status reads 0; the env's DMA memory
    // is unmapped right after this, so give the device a moment to say so.
    if (x.poll_ms > 0) {
      const uint64_t deadline = NowNs() + uint64_t{x.poll_ms} * 1000000ULL;
      while (io_read<uint32_t>(reg) != x.value && NowNs() < deadline) usleep(10);
    }
  }
  x.armed = false;
  ReleaseWindow(w);
}

napi_status ArmExitWrite(napi_env env, RegionWindow* w, size_t offset, uint32_t value, uint32_t poll_ms) {
  ExitWrite& x = w->exit_write;
  if (!x.registered) {
    w->holders++;
    napi_status status = napi_add_env_cleanup_hook(env, RunExitWrite, w);
    if (status != napi_ok) {
      w->holders--;  // the caller's hold remains: never the last
      return status;
    }
    x.registered = true;
  }
  x.offset = offset;
  x.value = value;
  x.poll_ms = poll_ms;
  x.armed = true;
  return napi_ok;
}

void DisarmExitWrite(napi_env env, RegionWindow* w) {
  ExitWrite& x = w->exit_write;
  x.armed = false;
  if (!x.registered) return;
  // Should the removal fail, the hook stays registered, disarmed, holding the
  // window until the env ends; it then only lets go of it.
  if (napi_remove_env_cleanup_hook(env, RunExitWrite, w) != napi_ok) return;
  x.registered = false;
  ReleaseWindow(w);
}

}  // namespace virtio_mmio
