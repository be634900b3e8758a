// Per-environment state of the addon (one per main thread or worker):
// nothing here is process-wide, so the addon is context-aware.
#pragma once

#include <napi.h>

namespace virtio_mmio {

struct AddonData {
  Napi::FunctionReference mmio_region;
  Napi::FunctionReference dma_memory;
  Napi::FunctionReference uio_file;
  Napi::FunctionReference poll_set;
  // JS function (kind, message, props) -> Error, installed by lib/platform
  // so that native failures are thrown as the library's typed errors.
  Napi::FunctionReference error_factory;
};

AddonData& GetAddonData(Napi::Env env);
void InstallAddonData(Napi::Env env);

}  // namespace virtio_mmio
