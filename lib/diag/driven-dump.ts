import { TransportError } from '../errors';
import { VirtioBlk, VirtioRng, type VirtioDriver } from '../devices';
import { PhysicalMemory, type DeviceMemory, type DmaAllocator, type RegisterBlock } from '../platform';
import type { QueueDump } from '../queue/queue-dump';
import { DeviceStatus, MmioRegister, deviceIdName } from '../spec';
import type { MmioTransport } from '../transport';
import { DRIVERS } from './drivers';
import {
  deviceRingMemory,
  readLiveQueue,
  type LiveQueueDump,
  type LiveQueueOptions,
  type RingMemory,
} from './live-queue';

/** What a queue dump runs on: openers of one device (the CLI's targets are one such pair). */
export interface QueueDumpSubject {
  /**
   * The device's registers alone, to see whether someone else drives it (Status is read, nothing written) and to
   * read its queue if so; absent for a device only this process can drive (a sim).
   */
  openRegisters?(): { where: string; regs: RegisterBlock; close(): void };
  /** Where the rings of a device driven elsewhere are read (default PhysicalMemory: /dev/mem). */
  ringMemory?: RingMemory;
  /** A transport on the device with DMA memory for its driver; `close` releases both. */
  openForDriver(): { where: string; transport: MmioTransport; memory: DmaAllocator & DeviceMemory; close(): void };
}

/** The dump options: readLiveQueue's, and `live` (read the queue only, even without DRIVER_OK). */
export interface QueueDumpOptions extends LiveQueueOptions {
  live?: boolean;
}

export type DrivenElsewhereDump = { where: string; driven: 'elsewhere'; live: LiveQueueDump };
export type DrivenHereDump = { where: string; driven: 'this process'; queue: QueueDump; live: LiveQueueDump };

/**
 * The state of queue `queue`. A device someone else drives (DRIVER_OK set,
 * virtio 1.2 §3.1.1 step 8, or `live`) is only read: registers, then its
 * rings. A device nobody drives is driven here, with a request in flight
 * where that is natural, and both views are given: the driver's
 * (VirtioDriver.dumpQueue) and what the registers and ring memory show.
 * The driver is closed (the device reset) before this resolves.
 */
export async function dumpQueueState(
  subject: QueueDumpSubject,
  queue: number,
  options: QueueDumpOptions = {},
): Promise<DrivenElsewhereDump | DrivenHereDump> {
  return readIfDrivenElsewhere(subject, queue, options) ?? (await driveAndDump(subject, queue, options));
}

/** The options readLiveQueue takes: all but `live`. */
function liveOptions(options: QueueDumpOptions): LiveQueueOptions {
  const rest: QueueDumpOptions = { ...options };
  delete rest.live;
  return rest;
}

/** The live dump through one opening of the registers; undefined when nobody drives the device. */
function readIfDrivenElsewhere(
  subject: QueueDumpSubject,
  queue: number,
  options: QueueDumpOptions,
): DrivenElsewhereDump | undefined {
  if (!subject.openRegisters) return undefined;
  const opened = subject.openRegisters();
  try {
    if (!options.live && !(opened.regs.readl(MmioRegister.Status) & DeviceStatus.DRIVER_OK)) return undefined;
    return {
      where: opened.where,
      driven: 'elsewhere',
      live: readLiveQueue(opened.regs, queue, subject.ringMemory ?? new PhysicalMemory(), liveOptions(options)),
    };
  } finally {
    opened.close();
  }
}

/**
 * Opens the driver for the device type; a request in flight for rng and blk (console and net post receive buffers on
 * open).
 */
function openDriver(
  transport: MmioTransport,
  memory: DmaAllocator,
): { driver: VirtioDriver; inFlight: Promise<unknown>[] } {
  const open = DRIVERS[transport.deviceId];
  if (!open) {
    throw new TransportError(
      TransportError.WRONG_DEVICE,
      `${transport.label}: dump drives entropy, block, console and network devices, this is ` +
        `${deviceIdName(transport.deviceId)}` +
        `; use --live on a device another driver has set up`,
    );
  }
  const driver = open(transport, { memory });
  if (driver instanceof VirtioRng) return { driver, inFlight: [driver.read(16)] };
  if (driver instanceof VirtioBlk) return { driver, inFlight: [driver.read(0, 512)] };
  return { driver, inFlight: [] };
}

async function driveAndDump(subject: QueueDumpSubject, queue: number, dump: QueueDumpOptions): Promise<DrivenHereDump> {
  const opened = subject.openForDriver();
  let driver: VirtioDriver | undefined;
  let inFlight: Promise<unknown>[] = [];
  try {
    ({ driver, inFlight } = openDriver(opened.transport, opened.memory));
    // Errors of the requests are not ours to report: they are canceled by close() below.
    for (const request of inFlight) request.catch(() => undefined);
    // A few microtasks: what was submitted is published (and the device notified); the sim and the
    // interrupt path run on later turns of the event loop, so the requests are still in flight.
    for (let i = 0; i < 8; i++) await Promise.resolve();
    let geometry: QueueDump;
    try {
      geometry = driver.dumpQueue(queue);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      throw new TransportError(
        TransportError.QUEUE_UNAVAILABLE,
        `${opened.where}: the device has no queue ${queue}, or the ${deviceIdName(opened.transport.deviceId)} ` +
          `driver does not use it`,
      );
    }
    const options: LiveQueueOptions = { ...liveOptions(dump), size: geometry.size, format: geometry.format };
    // The address registers are write-only (§4.2.2): the driver knows where its rings are.
    if (opened.transport.version === 2)
      options.addresses = {
        desc: BigInt(geometry.addresses.desc),
        driver: BigInt(geometry.addresses.driver),
        device: BigInt(geometry.addresses.device),
      };
    const live = readLiveQueue(opened.transport.regs, queue, deviceRingMemory(opened.memory), options);
    // The driver's view is taken after the memory's: a real device works beside us, and a chain the
    // driver still sees unused now was unused when the memory was read (nothing is submitted between).
    const state = driver.dumpQueue(queue);
    return { where: opened.where, driven: 'this process', queue: state, live };
  } finally {
    driver?.close();
    opened.close();
  }
}
