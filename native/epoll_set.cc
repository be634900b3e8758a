#include "epoll_set.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"

namespace virtio_mmio {

static constexpr int kBatch = 64;

static void OnPoll(uv_poll_t* poll, int status, int) {
  auto* handle = reinterpret_cast<EpollHandle*>(poll);  // poll is the first member
  if (handle->owner != nullptr) handle->owner->OnReadable(status);
}

static void OnClosed(uv_handle_t* raw) {
  auto* handle = reinterpret_cast<EpollHandle*>(raw);
  // Also the "done" signal for a cleanup hook that was already invoked.
  if (handle->cleanup_hook != nullptr) napi_remove_async_cleanup_hook(handle->cleanup_hook);
  delete handle;
}

// Environment teardown (process exit, worker termination): close the handle;
// Node keeps the loop running until OnClosed removes the hook.
static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  auto* handle = static_cast<EpollHandle*>(arg);
  if (!handle->closing && handle->owner != nullptr) handle->owner->Shutdown();
}

Napi::Function EpollSet::Define(Napi::Env env) {
  return DefineClass(env, "EpollSet",
                     {
                         InstanceMethod<&EpollSet::Add>("add"),
                         InstanceMethod<&EpollSet::Modify>("modify"),
                         InstanceMethod<&EpollSet::Remove>("remove"),
                         InstanceMethod<&EpollSet::Ref>("ref"),
                         InstanceMethod<&EpollSet::Unref>("unref"),
                         InstanceMethod<&EpollSet::Close>("close"),
                         InstanceAccessor<&EpollSet::GetFd>("fd"),
                         InstanceAccessor<&EpollSet::GetSize>("size"),
                         InstanceAccessor<&EpollSet::GetClosed>("closed"),
                     });
}

EpollSet::EpollSet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EpollSet>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw TypeErr(env, "EpollSet needs a callback function");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    throw Napi::Error::New(env, "no libuv loop for this environment");
  }
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw SyscallError(env, errno, "epoll_create1", "");
  handle_ = new EpollHandle();
  int rc = uv_poll_init(loop, &handle_->poll, epfd_);
  if (rc != 0) {
    delete handle_;
    handle_ = nullptr;
    close(epfd_);
    epfd_ = -1;
    throw SyscallError(env, -rc, "uv_poll_init", "");
  }
  handle_->owner = this;
  napi_add_async_cleanup_hook(env, OnEnvCleanup, handle_, &handle_->cleanup_hook);
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
}

EpollSet::~EpollSet() {
  self_ref_ = false;  // the reference is going away with this object
  Shutdown();
  delete async_context_;
}

void EpollSet::Shutdown() {
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  handle_->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), OnClosed);  // also stops polling
  handle_ = nullptr;
  polling_ = false;
  close(epfd_);  // after the poll is stopped
  epfd_ = -1;
  fds_.clear();
  if (self_ref_) {
    self_ref_ = false;
    try {
      ObjectWrap::Unref();
    } catch (const Napi::Error&) {
      // Environment teardown: the reference is going away anyway.
    }
  }
}

void EpollSet::CheckOpen(Napi::Env env) const {
  if (handle_ == nullptr) throw TypedError(env, "closed", "epoll set is closed");
}

// Active (polling, holding the loop open if ref'd, and keeping this object
// alive) exactly while at least one fd is registered.
void EpollSet::UpdateActivity() {
  bool active = !fds_.empty();
  if (active && !polling_) {
    uv_poll_start(&handle_->poll, UV_READABLE, OnPoll);
  } else if (!active && polling_) {
    uv_poll_stop(&handle_->poll);
  }
  polling_ = active;
  if (want_ref_) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  }
  // The async resource exists only while something is watched, so tools that
  // list live async resources (jest --detectOpenHandles) see none when idle.
  if (active && async_context_ == nullptr) async_context_ = new Napi::AsyncContext(Env(), "VirtioMmioEpollSet");
  ReleaseIdleContext();
  if (active != self_ref_) {
    self_ref_ = active;
    if (active) {
      ObjectWrap::Ref();
    } else {
      ObjectWrap::Unref();
    }
  }
}

// Runs from libuv, outside any JS call: nothing may throw out of here. The
// handle scope is opened raw so that it also covers the error path.
void EpollSet::OnReadable(int status) {
  Napi::Env env = Env();
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  try {
    if (status < 0) throw SyscallError(env, -status, "uv_poll", "epoll set");
    struct epoll_event events[kBatch];
    int n;
    do {
      n = epoll_wait(epfd_, events, kBatch, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw SyscallError(env, errno, "epoll_wait", "");
    if (n > 0) {
      Napi::Array batch = Napi::Array::New(env, static_cast<size_t>(n));
      for (int i = 0; i < n; i++) {
        Napi::Object item = Napi::Object::New(env);
        item.Set("fd", Napi::Number::New(env, events[i].data.fd));
        item.Set("events", Napi::Number::New(env, events[i].events));
        batch.Set(static_cast<uint32_t>(i), item);
      }
      if (async_context_ == nullptr) async_context_ = new Napi::AsyncContext(env, "VirtioMmioEpollSet");
      // The callback may remove every fd or close the set: the context it runs
      // in is released only after it returns.
      struct InCallback {
        EpollSet* set;
        explicit InCallback(EpollSet* s) : set(s) { set->in_callback_ = true; }
        ~InCallback() {
          set->in_callback_ = false;
          set->ReleaseIdleContext();
        }
      } guard(this);
      callback_.MakeCallback(env.Global(), {batch}, *async_context_);
    }
  } catch (const Napi::Error& e) {
    // A throwing callback is an uncaught exception, as for any Node callback
    // (this fails harmlessly while a worker is being terminated).
    napi_value error = nullptr;
    try {
      error = e.Value();
    } catch (...) {
    }
    if (error != nullptr) napi_fatal_exception(env, error);
  } catch (...) {
  }
  napi_close_handle_scope(env, scope);
}

void EpollSet::Control(Napi::Env env, int op, int fd, uint32_t events) {
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, op, fd, &ev) < 0) {
    throw SyscallError(env, errno, "epoll_ctl", "", "fd " + std::to_string(fd));
  }
}

static uint32_t ArgEvents(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsUndefined()) return EPOLLIN;
  return static_cast<uint32_t>(ArgIndex(info, i, "events", 0xffffffffULL));
}

// add(fd, events = EPOLLIN), level-triggered unless EPOLLET is given.
Napi::Value EpollSet::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = ArgFd(info, 0);
  Control(env, EPOLL_CTL_ADD, fd, ArgEvents(info, 1));
  fds_.insert(fd);
  UpdateActivity();
  return env.Undefined();
}

Napi::Value EpollSet::Modify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = ArgFd(info, 0);
  if (fds_.count(fd) == 0) throw RangeErr(env, "fd " + std::to_string(fd) + " is not in this epoll set");
  Control(env, EPOLL_CTL_MOD, fd, ArgEvents(info, 1));
  return env.Undefined();
}

// remove(fd): also fine after the fd was closed (the kernel dropped it then).
Napi::Value EpollSet::Remove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = ArgFd(info, 0);
  if (fds_.count(fd) == 0) throw RangeErr(env, "fd " + std::to_string(fd) + " is not in this epoll set");
  struct epoll_event ev = {};
  if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) < 0 && errno != EBADF && errno != ENOENT) {
    throw SyscallError(env, errno, "epoll_ctl", "", "fd " + std::to_string(fd));
  }
  fds_.erase(fd);
  UpdateActivity();
  return env.Undefined();
}

Napi::Value EpollSet::Ref(const Napi::CallbackInfo& info) {
  want_ref_ = true;
  if (handle_ != nullptr) UpdateActivity();
  return info.This();
}

Napi::Value EpollSet::Unref(const Napi::CallbackInfo& info) {
  want_ref_ = false;
  if (handle_ != nullptr) UpdateActivity();
  return info.This();
}

void EpollSet::ReleaseIdleContext() {
  if (in_callback_ || async_context_ == nullptr || (handle_ != nullptr && !fds_.empty())) return;
  delete async_context_;
  async_context_ = nullptr;
}

Napi::Value EpollSet::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  ReleaseIdleContext();
  return info.Env().Undefined();
}

Napi::Value EpollSet::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), epfd_); }
Napi::Value EpollSet::GetSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(fds_.size()));
}
Napi::Value EpollSet::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), handle_ == nullptr); }

}  // namespace virtio_mmio
