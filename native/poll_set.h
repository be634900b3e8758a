// Fds watched on the event loop's own epoll set, one uv_poll_t each. A ready
// fd costs libuv's epoll_pwait and nothing more (a nested epoll set, which
// this replaces, paid an epoll_wait of its own per wake-up: a syscall that
// costs ~100 µs in a guest under TCG).
//
// An fd added with EPOLLET is moved to edge-triggered in libuv's set after
// its first wake-up, provided libuv's registration is what this code
// expects (data = the fd, read back from /proc/self/fdinfo). Wake-ups from
// then on carry EPOLLET, telling the listener it need not read the fd;
// without the flag the fd is level-triggered and must be read.
#pragma once

#include <napi.h>
#include <uv.h>

#include <unordered_map>

namespace virtio_mmio {

struct PollCore;

struct PollWatch {
  uv_poll_t poll;  // first member: the libuv callbacks cast back
  PollCore* core = nullptr;
  int fd = -1;
  bool want_edge = false;
  bool edge = false;
  bool removed = false;
};

class PollSet;

// Outlives the PollSet until libuv has closed every handle.
struct PollCore {
  PollSet* owner = nullptr;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
  int open_handles = 0;
};

class PollSet : public Napi::ObjectWrap<PollSet> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new PollSet(callback: (fd: number, events: number) => void)
  explicit PollSet(const Napi::CallbackInfo& info);
  ~PollSet() override;

  void Shutdown();  // closes every handle; idempotent
  void OnReady(PollWatch* watch, int status, int uv_events);

 private:
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetEdgeCount(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;
  void CloseWatch(PollWatch* watch);
  void ArmEdge(PollWatch* watch);
  void UpdateActivity();
  void ReleaseIdleContext();

  uv_loop_t* loop_ = nullptr;
  PollCore* core_ = nullptr;
  std::unordered_map<int, PollWatch*> watches_;
  bool want_ref_ = true;
  bool self_ref_ = false;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* async_context_ = nullptr;
  bool in_callback_ = false;
};

}  // namespace virtio_mmio
