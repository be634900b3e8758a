// An epoll set watched from the event loop: its fd is polled by a uv_poll_t
// on the environment's own loop, so waiting for interrupts takes no thread
// and never blocks. Ready fds are delivered to JS in batches.
#pragma once

#include <napi.h>
#include <uv.h>

#include <unordered_set>

namespace virtio_mmio {

class EpollSet;

// Outlives the EpollSet when needed: libuv frees it only in the close callback.
struct EpollHandle {
  uv_poll_t poll;
  EpollSet* owner = nullptr;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
  bool closing = false;
};

class EpollSet : public Napi::ObjectWrap<EpollSet> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new EpollSet(callback: (events: {fd, events}[]) => void)
  explicit EpollSet(const Napi::CallbackInfo& info);
  ~EpollSet() override;

  void Shutdown();          // stop, close the handle and the epoll fd; idempotent
  void OnReadable(int status);

 private:
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Modify(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;
  void Control(Napi::Env env, int op, int fd, uint32_t events);
  void UpdateActivity();
  void ReleaseIdleContext();  // drops the async context unless active or inside the callback

  int epfd_ = -1;
  EpollHandle* handle_ = nullptr;
  std::unordered_set<int> fds_;
  bool polling_ = false;
  bool want_ref_ = true;
  bool self_ref_ = false;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* async_context_ = nullptr;
  bool in_callback_ = false;
};

}  // namespace virtio_mmio
