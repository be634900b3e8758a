// Small fd helpers: eventfd (the software device's interrupt line), pipes
// and socketpairs (tests), closing a raw fd.
#pragma once

#include <napi.h>

namespace virtio_mmio {

void DefineFdHelpers(Napi::Env env, Napi::Object exports);

}  // namespace virtio_mmio
