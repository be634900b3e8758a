// Probes for bench/mmio-access: the costs that bound a register access from
// JS (an empty Node-API call, raw and through node-addon-api) and the C floor.
// They live in the bench addon only, never in the library's.
#pragma once

#include <napi.h>

namespace virtio_mmio {

Napi::Object DefineBenchProbes(Napi::Env env);

}  // namespace virtio_mmio
