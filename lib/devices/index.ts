export { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';
export { DriverSetup } from './driver-setup';
export { VirtioRng, type VirtioRngOptions } from './virtio-rng';
export {
  VirtioNet,
  completeChecksum,
  type VirtioNetOptions,
  type NetChecksumRequest,
  type NetSendOptions,
  type ReceivedFrame,
} from './virtio-net';
export { VirtioConsole, type VirtioConsoleOptions, type ConsoleSize, type WaitForPortOptions } from './virtio-console';
export { ConsolePort } from './console-port';
export { VirtioBlk, type VirtioBlkOptions, type BlkRange, type BlkRequestOptions } from './virtio-blk';
export type { BlkInfo } from './blk-info';
export type { BlkReadStreamOptions, BlkWriteStreamOptions } from './blk-streams';
export {
  VirtioInput,
  type VirtioInputOptions,
  type VirtioInputEvents,
  type InputStats,
  type InputAbsInfoValue,
  type InputDevidsValue,
} from './virtio-input';
