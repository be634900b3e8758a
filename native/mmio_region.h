// A register window: a mapping of a UIO map, a /dev/mem range or a plain
// file, with bounds- and alignment-checked volatile accessors.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "exit_write.h"

namespace virtio_mmio {

// Shared by the wrapper object and each per-instance accessor function (the
// accessors get it as their callback data); freed when the last holder goes.
struct RegionWindow {
  uint8_t* map_base = nullptr;
  size_t map_len = 0;
  uint8_t* base = nullptr;  // first byte of the window inside the mapping
  size_t size = 0;
  bool open = false;
  int holders = 0;
  std::string label;
  // armExitWrite's store at env teardown (exit_write.h); off the accessors' path.
  ExitWrite exit_write;
};

// Set on every MmioRegion object by its constructor; JS cannot set or copy
// it. Code that unwraps a region it was handed as an argument (the bench
// addon's C loops) checks it first: napi_unwrap alone accepts any wrapped
// object, and a DmaMemory taken for a region is a wild pointer.
inline constexpr napi_type_tag kMmioRegionTypeTag = {0x6d6d696f72656769ULL, 0x9c1e5b0f3a7d4e21ULL};

class MmioRegion : public Napi::ObjectWrap<MmioRegion> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit MmioRegion(const Napi::CallbackInfo& info);
  ~MmioRegion() override;

  RegionWindow* window() const { return window_; }
  // Throws the typed "closed" error if the window was closed.
  void CheckOpen(Napi::Env env) const;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value CopyOut(const Napi::CallbackInfo& info);
  Napi::Value CopyIn(const Napi::CallbackInfo& info);
  Napi::Value PollUntil(const Napi::CallbackInfo& info);
  Napi::Value ReadlViaWrapper(const Napi::CallbackInfo& info);
  Napi::Value WritelViaWrapper(const Napi::CallbackInfo& info);
  Napi::Value Arm(const Napi::CallbackInfo& info);
  Napi::Value Disarm(const Napi::CallbackInfo& info);
  Napi::Value GetArmed(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetLabel(const Napi::CallbackInfo& info);

  void InstallAccessors(Napi::Env env);
  size_t CheckRange(Napi::Env env, uint64_t offset, uint64_t length, unsigned width) const;

  RegionWindow* window_ = nullptr;
};

void ReleaseWindow(RegionWindow* window);
void UnmapWindow(RegionWindow* window);

}  // namespace virtio_mmio
