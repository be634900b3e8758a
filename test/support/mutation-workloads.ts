import type { Duplex } from 'node:stream';
import { VirtioConsole, VirtioNet, VirtioRng, type DriverOptions } from '../../lib/devices';
import { ConsoleModel, NetModel, RngModel, type SimDevice, type SimDeviceModel } from '../../lib/sim';
import type { DmaRegion } from '../../lib/platform';
import type { MmioTransport } from '../../lib/transport';
import { EchoDriver } from './echo-driver';
import type { MutationRandom } from './mutation-random';
import type { SettleTracker } from './mutation-tracker';
import { blkWorkload } from './mutation-blk-workload';
import { echoModel } from './sim-rig';

/** What a workload may use besides its driver. */
export interface WorkloadContext {
  readonly random: MutationRandom;
  readonly tracker: SettleTracker;
  /** A resolved request carried the wrong result (another request's, or none). */
  mismatch(what: string): void;
  readonly sim: SimDevice;
}

/** One device type's operations on an open driver. */
export interface Workload {
  /** Starts one operation; the promise settles (never rejects) when every request it made has. */
  start(signal?: AbortSignal): Promise<void>;
  /** Closes the driver. */
  close(): void;
  /** After close: end-of-run checks of what came back (console, net). */
  finish?(): void;
}

export interface WorkloadKind {
  readonly device: 'rng' | 'blk' | 'console' | 'net' | 'echo';
  model(random: MutationRandom): SimDeviceModel;
  open(transport: MmioTransport, options: DriverOptions, context: WorkloadContext, model: SimDeviceModel): Workload;
}

export const rngWorkload: WorkloadKind = {
  device: 'rng',
  model: (random) =>
    new RngModel({
      queueSize: random.pick([8, 16, 64]),
      maxBytesPerRequest: random.chance(0.3) ? 1 + random.int(64) : undefined,
    }),
  open(transport, options, { random, tracker, mismatch }) {
    const requestBytes = random.pick([16, 64, 512]);
    const rng = VirtioRng.open(transport, { ...options, requestBytes });
    return {
      start(signal) {
        const length = 1 + random.int(requestBytes * 3);
        return tracker.track('rng read', rng.read(length, { signal }), (bytes) => {
          if (bytes.length !== length) mismatch(`rng read of ${length} bytes returned ${bytes.length}`);
        });
      },
      close: () => rng.close(),
    };
  },
};

/** EchoDriver, plus giving one buffer back (EchoDriver.echo frees its buffers even after an abort). */
class ReleasingEchoDriver extends EchoDriver {
  release(region: DmaRegion): void {
    this.memory.free(region);
  }
}

export const echoWorkload: WorkloadKind = {
  device: 'echo',
  model: (random) => echoModel({ queueSizes: [random.pick([4, 8, 16])] }),
  open(transport, options, { random, tracker, mismatch }) {
    const driver = new ReleasingEchoDriver(transport, options);
    return {
      start(signal) {
        const parts = Array.from({ length: 1 + random.int(3) }, () => random.bytes(1 + random.int(64)));
        const outSizes = Array.from({ length: 1 + random.int(2) }, () => 1 + random.int(128));
        const input = Buffer.concat(parts);
        const expected = input.subarray(
          0,
          Math.min(
            input.length,
            outSizes.reduce((a, b) => a + b, 0),
          ),
        );
        // As EchoDriver.echo, except that buffers go back only when the device returned them (not after an abort).
        const readable = parts.map((p) => driver.dma(p));
        const writable = outSizes.map((n) => driver.dma(n));
        const request = driver.q.submit(
          { readable: readable.map((region) => ({ region })), writable: writable.map((region) => ({ region })) },
          { signal },
        );
        return tracker.track('echo', request, (len) => {
          const out = Buffer.concat(writable.map((r) => driver.bytes(r))).subarray(0, len);
          if (!out.equals(expected)) mismatch(`echo of ${input.length} bytes came back as ${out.length} other bytes`);
          for (const region of [...readable, ...writable]) driver.release(region);
        });
      },
      close: () => driver.close(),
    };
  },
};

export const consoleWorkload: WorkloadKind = {
  device: 'console',
  model: (random) =>
    new ConsoleModel({
      echo: true,
      queueSize: random.pick([4, 8, 16]),
      size: random.chance(0.5) ? { cols: 80, rows: 24 } : undefined,
    }),
  open(transport, options, context, model) {
    const { random, tracker, mismatch, sim } = context;
    const console = VirtioConsole.open(transport, {
      ...options,
      receiveBuffers: 1 + random.int(6),
      receiveBufferBytes: random.pick([8, 32, 256]),
      transmitBufferBytes: random.pick([8, 16, 64]),
      multiport: false,
    });
    const stream: Duplex = console.stream;
    const sent: Buffer[] = [];
    const received: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => received.push(chunk));
    stream.on('error', (error) => tracker.reject(error));
    return {
      start() {
        if (random.chance(0.05)) {
          // A device-side config change (cols/rows): the driver reads config from the interrupt.
          (model as ConsoleModel).setSize({ cols: 1 + random.int(200), rows: 1 + random.int(100) });
          sim.raiseConfigChange();
          return Promise.resolve();
        }
        const chunk = random.bytes(1 + random.int(100));
        sent.push(chunk);
        const { callback, done } = tracker.callback('console write');
        stream.write(chunk, callback);
        return done;
      },
      close: () => console.close(),
      finish() {
        const all = Buffer.concat(sent);
        const back = Buffer.concat(received);
        if (!all.subarray(0, back.length).equals(back))
          mismatch(`console echo returned ${back.length} bytes that are not a prefix of the ${all.length} sent`);
      },
    };
  },
};

export const netWorkload: WorkloadKind = {
  device: 'net',
  model: (random) =>
    new NetModel({
      loopback: true,
      queueSize: random.pick([8, 16, 32]),
      mergeable: random.chance(0.5),
      linkUp: random.pick([true, false, null]),
    }),
  open(transport, options, context, model) {
    const { random, tracker, mismatch, sim } = context;
    const net = VirtioNet.open(transport, { ...options, receiveBuffers: 1 + random.int(8) });
    const frames = net.frames();
    const sent = new Set<string>();
    let receiving = 0;
    let serial = 0;
    return {
      start() {
        const roll = random.next();
        if (roll < 0.05) {
          (model as NetModel).setLink(random.chance(0.5));
          sim.raiseConfigChange();
          return Promise.resolve();
        }
        if (roll < 0.35 && receiving < 4) {
          // Waits for a frame that may come with a later send: tracked, but not waited for here.
          receiving++;
          void tracker
            .track('net receive', frames.next(), (result) => {
              if (!result.done && !sent.has(result.value.toString('hex')))
                mismatch(`net received a ${result.value.length}-byte frame that was never sent`);
            })
            .then(() => receiving--);
          return Promise.resolve();
        }
        const frame = random.bytes(14 + 46 + random.int(200));
        frame.writeUInt32LE(++serial, 14);
        sent.add(frame.toString('hex'));
        return tracker.track('net send', net.send(frame));
      },
      close: () => net.close(),
    };
  },
};

export const WORKLOADS: readonly WorkloadKind[] = [
  rngWorkload,
  blkWorkload,
  consoleWorkload,
  netWorkload,
  echoWorkload,
];
export { blkWorkload };
