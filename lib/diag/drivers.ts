import {
  VirtioBlk,
  VirtioConsole,
  VirtioInput,
  VirtioNet,
  VirtioRng,
  type DriverOptions,
  type VirtioDriver,
} from '../devices';
import { DeviceId } from '../spec';
import type { VirtioTransport } from '../transport';

/** The library's driver for each device type the CLI drives (rng, blk, console, net, input), by DeviceID. */
export const DRIVERS: Partial<Record<number, (transport: VirtioTransport, options: DriverOptions) => VirtioDriver>> = {
  [DeviceId.ENTROPY]: (transport, options) => VirtioRng.open(transport, options),
  [DeviceId.BLOCK]: (transport, options) => VirtioBlk.open(transport, options),
  [DeviceId.CONSOLE]: (transport, options) => VirtioConsole.open(transport, options),
  [DeviceId.NET]: (transport, options) => VirtioNet.open(transport, options),
  [DeviceId.INPUT]: (transport, options) => VirtioInput.open(transport, options),
};
