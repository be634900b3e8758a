#include "uio_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "errors.h"

namespace virtio_mmio {

Napi::Function UioFile::Define(Napi::Env env) {
  return DefineClass(env, "UioFile",
                     {
                         InstanceMethod<&UioFile::Enable>("enable"),
                         InstanceMethod<&UioFile::Disable>("disable"),
                         InstanceMethod<&UioFile::ReadCount>("readCount"),
                         InstanceMethod<&UioFile::Close>("close"),
                         InstanceAccessor<&UioFile::GetFd>("fd"),
                         InstanceAccessor<&UioFile::GetPath>("path"),
                         InstanceAccessor<&UioFile::GetClosed>("closed"),
                     });
}

UioFile::UioFile(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UioFile>(info) {
  Napi::Env env = info.Env();
  if (info[0].IsString()) {
    path_ = info[0].As<Napi::String>().Utf8Value();
    fd_ = open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) throw SyscallError(env, errno, "open", path_);
  } else if (info[0].IsNumber()) {
    fd_ = ArgFd(info, 0);
    path_ = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "fd " + std::to_string(fd_);
  } else {
    throw TypeErr(env, "UioFile needs a path or a file descriptor");
  }
}

UioFile::~UioFile() {
  if (fd_ >= 0) close(fd_);
}

void UioFile::CheckOpen(Napi::Env env) const {
  if (fd_ < 0) throw TypedError(env, "closed", path_ + " is closed");
}

// Writing a 4-byte 1/0 re-enables/disables the interrupt (the driver's
// irqcontrol); drivers without irqcontrol answer ENOSYS.
void UioFile::WriteControl(Napi::Env env, uint32_t value) {
  CheckOpen(env);
  ssize_t n;
  do {
    n = write(fd_, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw SyscallError(env, errno, "write", path_);
  if (n != static_cast<ssize_t>(sizeof value)) throw SyscallError(env, EIO, "write", path_, "short write");
}

Napi::Value UioFile::Enable(const Napi::CallbackInfo& info) {
  WriteControl(info.Env(), 1);
  return info.Env().Undefined();
}

Napi::Value UioFile::Disable(const Napi::CallbackInfo& info) {
  WriteControl(info.Env(), 0);
  return info.Env().Undefined();
}

// readCount(): the 4-byte total interrupt count, or null when no interrupt is
// pending (EAGAIN). End of file means the device went away: an EIO error.
Napi::Value UioFile::ReadCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint32_t count = 0;
  ssize_t n;
  do {
    n = read(fd_, &count, sizeof count);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return env.Null();
  if (n < 0) throw SyscallError(env, errno, "read", path_);
  if (n == 0) throw SyscallError(env, EIO, "read", path_, "end of file: the device is gone");
  if (n != static_cast<ssize_t>(sizeof count)) throw SyscallError(env, EIO, "read", path_, "short read");
  return Napi::Number::New(env, count);
}

Napi::Value UioFile::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

Napi::Value UioFile::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
Napi::Value UioFile::GetPath(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }
Napi::Value UioFile::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

}  // namespace virtio_mmio
