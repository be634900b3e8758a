#include "poll_set.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "errors.h"

namespace virtio_mmio {

static void FreeCoreIfDone(PollCore* core) {
  if (core->owner != nullptr || core->open_handles > 0) return;
  // Also the "done" signal for a cleanup hook that was already invoked.
  if (core->cleanup_hook != nullptr) napi_remove_async_cleanup_hook(core->cleanup_hook);
  delete core;
}

static void OnPollCb(uv_poll_t* poll, int status, int events) {
  auto* watch = reinterpret_cast<PollWatch*>(poll);
  if (watch->removed || watch->core->owner == nullptr) return;
  watch->core->owner->OnReady(watch, status, events);
}

static void OnWatchClosed(uv_handle_t* raw) {
  auto* watch = reinterpret_cast<PollWatch*>(raw);
  PollCore* core = watch->core;
  delete watch;
  core->open_handles--;
  FreeCoreIfDone(core);
}

// Environment teardown (process exit, worker termination): close every
// handle; Node keeps the loop running until the last close removes the hook.
static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  auto* core = static_cast<PollCore*>(arg);
  if (core->owner != nullptr) core->owner->Shutdown();  // frees core when nothing was open
}

// What libuv registered for fd in its epoll set, from /proc/self/fdinfo
// (lines "tfd: <fd> events: <hex> data: <hex> ..."). True only when the
// registration's data is the fd itself, as libuv's epoll backend sets it:
// then a registration rewritten with EPOLLET is still dispatched by libuv.
static bool LibuvRegistration(int backend, int fd, uint32_t* events) {
  std::string path = "/proc/self/fdinfo/" + std::to_string(backend);
  int file = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file < 0) return false;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(file, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(file);
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    at = end + 1;
    int tfd = -1;
    unsigned int registered = 0;
    unsigned long long data = 0;
    if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &tfd, &registered, &data) != 3) continue;
    if (tfd != fd) continue;
    epoll_data_t as_data;
    as_data.u64 = data;
    if (as_data.fd != fd) return false;
    *events = registered;
    return true;
  }
  return false;
}

Napi::Function PollSet::Define(Napi::Env env) {
  return DefineClass(env, "PollSet",
                     {
                         InstanceMethod<&PollSet::Add>("add"),
                         InstanceMethod<&PollSet::Remove>("remove"),
                         InstanceMethod<&PollSet::Ref>("ref"),
                         InstanceMethod<&PollSet::Unref>("unref"),
                         InstanceMethod<&PollSet::Close>("close"),
                         InstanceAccessor<&PollSet::GetSize>("size"),
                         InstanceAccessor<&PollSet::GetClosed>("closed"),
                         InstanceAccessor<&PollSet::GetEdgeCount>("edgeCount"),
                     });
}

PollSet::PollSet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PollSet>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw TypeErr(env, "PollSet needs a callback function");
  if (napi_get_uv_event_loop(env, &loop_) != napi_ok || loop_ == nullptr) {
    throw Napi::Error::New(env, "no libuv loop for this environment");
  }
  core_ = new PollCore();
  core_->owner = this;
  napi_add_async_cleanup_hook(env, OnEnvCleanup, core_, &core_->cleanup_hook);
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
}

PollSet::~PollSet() {
  self_ref_ = false;  // the reference is going away with this object
  Shutdown();
  delete async_context_;
}

void PollSet::CloseWatch(PollWatch* watch) {
  watch->removed = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), OnWatchClosed);  // also stops polling
}

void PollSet::Shutdown() {
  if (core_ == nullptr) return;
  PollCore* core = core_;
  core_ = nullptr;
  core->owner = nullptr;
  for (auto& entry : watches_) CloseWatch(entry.second);
  watches_.clear();
  if (self_ref_) {
    self_ref_ = false;
    try {
      ObjectWrap::Unref();
    } catch (const Napi::Error&) {
      // Environment teardown: the reference is going away anyway.
    }
  }
  FreeCoreIfDone(core);
}

void PollSet::CheckOpen(Napi::Env env) const {
  if (core_ == nullptr) throw TypedError(env, "closed", "poll set is closed");
}

// Active (holding this object, and the loop unless unref'd) exactly while
// at least one fd is watched.
void PollSet::UpdateActivity() {
  bool active = !watches_.empty();
  if (active && async_context_ == nullptr) async_context_ = new Napi::AsyncContext(Env(), "VirtioMmioPollSet");
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

void PollSet::ReleaseIdleContext() {
  if (in_callback_ || async_context_ == nullptr || (core_ != nullptr && !watches_.empty())) return;
  delete async_context_;
  async_context_ = nullptr;
}

// Runs from libuv, outside any JS call: nothing may throw out of here.
void PollSet::OnReady(PollWatch* watch, int status, int uv_events) {
  Napi::Env env = Env();
  uint32_t events = 0;
  if (status < 0) {
    events = EPOLLERR;  // libuv has stopped the handle
  } else {
    if (uv_events & UV_READABLE) events |= EPOLLIN;
    if (uv_events & UV_WRITABLE) events |= EPOLLOUT;
    if (uv_events & UV_DISCONNECT) events |= EPOLLHUP;
    if (watch->edge) events |= EPOLLET;
  }
  bool arm = status >= 0 && watch->want_edge && !watch->edge;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  try {
    if (async_context_ == nullptr) async_context_ = new Napi::AsyncContext(env, "VirtioMmioPollSet");
    // The callback may remove the fd or close the set: the context it runs
    // in is released only after it returns.
    struct InCallback {
      PollSet* set;
      explicit InCallback(PollSet* s) : set(s) { set->in_callback_ = true; }
      ~InCallback() {
        set->in_callback_ = false;
        set->ReleaseIdleContext();
      }
    } guard(this);
    callback_.MakeCallback(env.Global(), {Napi::Number::New(env, watch->fd), Napi::Number::New(env, events)},
                           *async_context_);
  } catch (const Napi::Error& e) {
    // A throwing callback is an uncaught exception, as for any Node callback.
    napi_value error = nullptr;
    try {
      error = e.Value();
    } catch (...) {
    }
    if (error != nullptr) napi_fatal_exception(env, error);
  } catch (...) {
  }
  napi_close_handle_scope(env, scope);
  // The handle's memory lives until its close callback, so watch is valid here.
  if (arm && !watch->removed && core_ != nullptr) ArmEdge(watch);
}

// After the first wake-up (level-triggered, so the listener has read the
// fd): libuv's registration, which it does not touch again while the handle
// polls, becomes edge-triggered. Each later wake-up of the fd's waiters is
// one event. If the registration is not as expected, the fd stays
// level-triggered and its wake-ups keep saying so (no EPOLLET).
void PollSet::ArmEdge(PollWatch* watch) {
  int backend = uv_backend_fd(loop_);
  uint32_t registered = 0;
  if (backend < 0 || !LibuvRegistration(backend, watch->fd, &registered)) return;
  struct epoll_event ev = {};
  ev.events = registered | EPOLLET;
  ev.data.fd = watch->fd;
  if (epoll_ctl(backend, EPOLL_CTL_MOD, watch->fd, &ev) == 0) watch->edge = true;
}

static constexpr uint32_t kAllowedEvents = EPOLLIN | EPOLLOUT | EPOLLET;

// add(fd, events = EPOLLIN): EPOLLIN and/or EPOLLOUT, plus EPOLLET for
// edge-triggered once armed (see the header).
Napi::Value PollSet::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = ArgFd(info, 0);
  uint32_t events =
      info[1].IsUndefined() ? EPOLLIN : static_cast<uint32_t>(ArgIndex(info, 1, "events", 0xffffffffULL));
  if ((events & ~kAllowedEvents) != 0 || (events & (EPOLLIN | EPOLLOUT)) == 0) {
    throw RangeErr(env, "events must be EPOLLIN and/or EPOLLOUT, optionally with EPOLLET");
  }
  if (watches_.count(fd) != 0) throw RangeErr(env, "fd " + std::to_string(fd) + " is already in this poll set");
  auto* watch = new PollWatch();
  int rc = uv_poll_init(loop_, &watch->poll, fd);
  if (rc != 0) {
    delete watch;
    throw SyscallError(env, -rc, "uv_poll_init", "", "fd " + std::to_string(fd));
  }
  watch->core = core_;
  watch->fd = fd;
  watch->want_edge = (events & EPOLLET) != 0;
  core_->open_handles++;
  // UV_DISCONNECT: a hang-up is reported as such (EPOLLHUP), not as readability alone.
  int uv_events = ((events & EPOLLIN) ? UV_READABLE | UV_DISCONNECT : 0) | ((events & EPOLLOUT) ? UV_WRITABLE : 0);
  rc = uv_poll_start(&watch->poll, uv_events, OnPollCb);
  if (rc != 0) {
    CloseWatch(watch);
    throw SyscallError(env, -rc, "uv_poll_start", "", "fd " + std::to_string(fd));
  }
  if (!want_ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&watch->poll));
  watches_[fd] = watch;
  UpdateActivity();
  return env.Undefined();
}

// remove(fd): also fine after the fd was closed.
Napi::Value PollSet::Remove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = ArgFd(info, 0);
  auto found = watches_.find(fd);
  if (found == watches_.end()) throw RangeErr(env, "fd " + std::to_string(fd) + " is not in this poll set");
  CloseWatch(found->second);
  watches_.erase(found);
  UpdateActivity();
  return env.Undefined();
}

Napi::Value PollSet::Ref(const Napi::CallbackInfo& info) {
  want_ref_ = true;
  for (auto& entry : watches_) uv_ref(reinterpret_cast<uv_handle_t*>(&entry.second->poll));
  return info.This();
}

Napi::Value PollSet::Unref(const Napi::CallbackInfo& info) {
  want_ref_ = false;
  for (auto& entry : watches_) uv_unref(reinterpret_cast<uv_handle_t*>(&entry.second->poll));
  return info.This();
}

Napi::Value PollSet::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  ReleaseIdleContext();
  return info.Env().Undefined();
}

Napi::Value PollSet::GetSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(watches_.size()));
}
Napi::Value PollSet::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), core_ == nullptr); }
Napi::Value PollSet::GetEdgeCount(const Napi::CallbackInfo& info) {
  size_t n = 0;
  for (auto& entry : watches_) n += entry.second->edge ? 1 : 0;
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

}  // namespace virtio_mmio
