// A UIO device file (/dev/uioN): interrupt enable/disable and the event
// count, per Documentation/driver-api/uio-howto.rst (4-byte reads/writes).
#pragma once

#include <napi.h>

#include <string>

namespace virtio_mmio {

class UioFile : public Napi::ObjectWrap<UioFile> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new UioFile(path) opens it non-blocking and close-on-exec;
  // new UioFile(fd, label) adopts an open descriptor (tests, socketpairs).
  explicit UioFile(const Napi::CallbackInfo& info);
  ~UioFile() override;

 private:
  Napi::Value Enable(const Napi::CallbackInfo& info);
  Napi::Value Disable(const Napi::CallbackInfo& info);
  Napi::Value ReadCount(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetPath(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  void WriteControl(Napi::Env env, uint32_t value);
  void CheckOpen(Napi::Env env) const;

  int fd_ = -1;
  std::string path_;
};

}  // namespace virtio_mmio
