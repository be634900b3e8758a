// Module entry: one instance per environment (main thread or worker).
#include <napi.h>
#include <unistd.h>

#include "addon_data.h"
#include "dma_memory.h"
#include "poll_set.h"
#include "fd_helpers.h"
#include "io_access.h"
#include "mmio_region.h"
#include "uio_file.h"

namespace virtio_mmio {

static Napi::Value Mb(const Napi::CallbackInfo& info) { barrier_mb(); return info.Env().Undefined(); }
static Napi::Value Rmb(const Napi::CallbackInfo& info) { barrier_rmb(); return info.Env().Undefined(); }
static Napi::Value Wmb(const Napi::CallbackInfo& info) { barrier_wmb(); return info.Env().Undefined(); }
static Napi::Value DmaRmb(const Napi::CallbackInfo& info) { barrier_dma_rmb(); return info.Env().Undefined(); }
static Napi::Value DmaWmb(const Napi::CallbackInfo& info) { barrier_dma_wmb(); return info.Env().Undefined(); }

// setErrorFactory(fn): fn(kind, message, props) returns the Error to throw.
static Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "error factory must be a function");
  GetAddonData(info.Env()).error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallAddonData(env);
  AddonData& data = GetAddonData(env);

  Napi::Function region = MmioRegion::Define(env);
  Napi::Function dma = DmaMemory::Define(env);
  Napi::Function uio = UioFile::Define(env);
  Napi::Function poll = PollSet::Define(env);
  data.mmio_region = Napi::Persistent(region);
  data.dma_memory = Napi::Persistent(dma);
  data.uio_file = Napi::Persistent(uio);
  data.poll_set = Napi::Persistent(poll);

  exports.Set("MmioRegion", region);
  exports.Set("DmaMemory", dma);
  exports.Set("UioFile", uio);
  exports.Set("PollSet", poll);
  exports.Set("allocHugetlb", Napi::Function::New<DmaMemory::AllocHugetlb>(env, "allocHugetlb"));
  exports.Set("mapPhysical", Napi::Function::New<DmaMemory::MapPhysical>(env, "mapPhysical"));
  exports.Set("allocAnonymous", Napi::Function::New<DmaMemory::AllocAnonymous>(env, "allocAnonymous"));
  exports.Set("mb", Napi::Function::New<Mb>(env, "mb"));
  exports.Set("rmb", Napi::Function::New<Rmb>(env, "rmb"));
  exports.Set("wmb", Napi::Function::New<Wmb>(env, "wmb"));
  exports.Set("dmaRmb", Napi::Function::New<DmaRmb>(env, "dmaRmb"));
  exports.Set("dmaWmb", Napi::Function::New<DmaWmb>(env, "dmaWmb"));
  exports.Set("setErrorFactory", Napi::Function::New<SetErrorFactory>(env, "setErrorFactory"));
  exports.Set("barrierKind", Napi::String::New(env, kBarrierKind));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
  DefineFdHelpers(env, exports);
  return exports;
}

}  // namespace virtio_mmio

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return virtio_mmio::Init(env, exports); }

NODE_API_MODULE(virtio_mmio, InitModule)
