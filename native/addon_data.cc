#include "addon_data.h"

namespace virtio_mmio {

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

void InstallAddonData(Napi::Env env) { env.SetInstanceData<AddonData>(new AddonData()); }

}  // namespace virtio_mmio
