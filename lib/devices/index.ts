export { VirtioDriver, type DriverPlan, type DriverOptions, type StartedDevice } from './virtio-driver';
export { VirtioRng, type VirtioRngOptions } from './virtio-rng';
export { VirtioNet, type VirtioNetOptions } from './virtio-net';
export { VirtioConsole, type VirtioConsoleOptions, type ConsoleSize, type WaitForPortOptions } from './virtio-console';
export { ConsolePort } from './console-port';
export { VirtioBlk, type VirtioBlkOptions, type BlkInfo, type BlkRange, type BlkRequestOptions } from './virtio-blk';
