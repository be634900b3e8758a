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

// The mapping, owned jointly by everything that can still reach it: the
// DmaMemory wrapper (until free()), the ArrayBuffer object it made, and that
// buffer's backing store (which transfer() can move to another ArrayBuffer).
// The last of them to go unmaps it.
struct DmaBlock {
  void* map_base = nullptr;
  size_t map_len = 0;
  uint8_t* data = nullptr;
  size_t size = 0;
  uint64_t iova = 0;
  std::string kind;
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

  // Null once freed: the wrapper's hold is gone and the block may be gone with it.
  DmaBlock* block_ = nullptr;
  // Strong until free(), weak after (a freed wrapper must not keep the memory mapped).
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  // Copies, so that the accessors still answer after free().
  uint64_t iova_ = 0;
  size_t size_ = 0;
  std::string kind_;
};

}  // namespace virtio_mmio
