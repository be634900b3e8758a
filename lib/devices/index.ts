export { VirtioDriver, type DriverPlan, type DriverOptions, type StartedDevice } from './virtio-driver';
export { VirtioRng, type VirtioRngOptions } from './virtio-rng';
