// Module entry of virtio_mmio_bench, the addon that only bench/ programs
// load: measuring probes that have no place in the library's addon. One
// instance per environment, like the library's.
#include <napi.h>

#include "addon_data.h"
#include "bench_probes.h"

namespace virtio_mmio {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // errors.cc looks for an error factory here; without one it throws built-in errors.
  InstallAddonData(env);
  return DefineBenchProbes(env);
}

}  // namespace virtio_mmio

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return virtio_mmio::Init(env, exports); }

NODE_API_MODULE(virtio_mmio_bench, InitModule)
