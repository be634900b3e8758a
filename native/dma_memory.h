// DMA memory: pinned, physically contiguous memory with the address the
// device uses for it (iova), seen from JS as an external ArrayBuffer that is
// detached when the memory is freed.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace virtio_mmio {

// Owned jointly by the DmaMemory wrapper and the ArrayBuffer's finalizer.
struct DmaBlock {
  void* map_base = nullptr;
  size_t map_len = 0;
  uint8_t* data = nullptr;
  size_t size = 0;
  uint64_t iova = 0;
  std::string kind;
  bool mapped = false;
  std::atomic<int> holders{0};
};

class DmaMemory : public Napi::ObjectWrap<DmaMemory> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit DmaMemory(const Napi::CallbackInfo& info);
  ~DmaMemory() override;

  // Factories exported by the addon.
  static Napi::Value AllocHugetlb(const Napi::CallbackInfo& info);      // (size)
  static Napi::Value MapPhysical(const Napi::CallbackInfo& info);       // (phys, size, cached)
  static Napi::Value AllocAnonymous(const Napi::CallbackInfo& info);    // (size, iova)

 private:
  static Napi::Value Wrap(Napi::Env env, DmaBlock* block);
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Translate(const Napi::CallbackInfo& info);
  Napi::Value GetView(const Napi::CallbackInfo& info);
  Napi::Value GetIova(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetKind(const Napi::CallbackInfo& info);
  Napi::Value GetFreed(const Napi::CallbackInfo& info);

  DmaBlock* block_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

}  // namespace virtio_mmio
