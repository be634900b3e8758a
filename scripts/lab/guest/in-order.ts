/**
 * Runs in the lab guest on QEMU 10.0 from bookworm-backports, whose virtio
 * devices take in_order=on (test/lab/in-order.test.ts): every rng, blk and
 * console transport on UIO is opened with our drivers, which ask for
 * VIRTIO_F_IN_ORDER (virtio 1.2 §2.7.9 split, §2.8.20 packed) among their
 * transport features, then driven with several requests in flight so that a
 * device may batch its used elements. Per device: a 'device' line (what it
 * offered, what was negotiated, the ring format), a 'queue' line per queue
 * (its counters: completions, used elements that stood for a batch) and a
 * 'check' line (the data came back right), or an 'error' line when the
 * device broke the queue (QEMU 10.0.2's virtio-rng does with in_order=on).
 *
 *   node scripts/lab/guest/in-order.js
 *
 * blk expects the host to have written pattern(PATTERN_BYTES) at sector 0
 * (the image file, before the boot); it reads that back and writes and
 * reads its own pattern after it. The console expects port 0 to echo.
 */
import type { Duplex } from 'node:stream';
import { VirtioBlk, VirtioConsole, VirtioRng } from '../../../lib/devices';
import type { VirtioDriver } from '../../../lib/devices/virtio-driver';
import {
  ConsoleQueue,
  DeviceId,
  FeatureBit,
  describeFeatures,
  hasFeature,
  portReceiveQueue,
  portTransmitQueue,
} from '../../../lib/spec';
import type { UioDeviceSpec } from '../../../lib/transport';
import { pattern } from './blk-pattern';
import { describeReport, openOnUio, scan } from './devices';
import { report, runMain } from './report';

/** The bytes of pattern() the host writes at sector 0 of every blk image. */
export const PATTERN_BYTES = 1 << 20;
/** Requests in flight: blk reads and writes, rng reads, console chunks. */
export const DEPTH = { blkRead: 32, blkWrite: 16, rng: 16, console: 16 } as const;
const BLOCK = 4096;
const RNG_REQUESTS = 64;
const RNG_BYTES = 256;
const CONSOLE_CHUNKS = 32;
const CONSOLE_CHUNK = 1024;
/** A device that stops using buffers fails its requests (TimeoutError) instead of hanging the boot. */
const REQUEST_TIMEOUT_MS = 20_000;

/** The transport bits this boot is about, each offered and negotiated. */
const WATCHED = ['IN_ORDER', 'RING_PACKED', 'NOTIFICATION_DATA', 'RING_RESET', 'EVENT_IDX', 'INDIRECT_DESC'] as const;

/** Runs `total` jobs with at most `depth` in flight. */
async function inFlight(depth: number, total: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(depth, total) }, async () => {
      while (next < total) await job(next++);
    }),
  );
}

/** The 'device' and 'queue' lines of an open driver. */
function describe(type: string, device: string, driver: VirtioDriver, queues: number[]): void {
  const offered = driver.transport.deviceFeatures;
  const negotiated = driver.features;
  const watched = Object.fromEntries(
    WATCHED.map((name) => [
      name,
      { offered: hasFeature(offered, FeatureBit[name]), negotiated: hasFeature(negotiated, FeatureBit[name]) },
    ]),
  );
  report({
    kind: 'device',
    type,
    device,
    version: driver.transport.version,
    format: driver.dumpQueue(queues[0]).format,
    queueSizes: queues.map((index) => driver.dumpQueue(index).size),
    offered,
    negotiated,
    offeredNames: describeFeatures(offered),
    negotiatedNames: describeFeatures(negotiated),
    features: watched,
  });
  for (const index of queues) report({ kind: 'queue', type, device, index, stats: driver.queueStats(index) });
}

async function rng(spec: UioDeviceSpec): Promise<void> {
  const { driver, close } = openOnUio(spec, (t, memory) =>
    VirtioRng.open(t, { memory, requestBytes: RNG_BYTES, requestTimeoutMs: REQUEST_TIMEOUT_MS }),
  );
  try {
    const seen = new Set<number>();
    let bytes = 0;
    let zeroRequests = 0;
    await inFlight(DEPTH.rng, RNG_REQUESTS, async () => {
      const data = await driver.read(RNG_BYTES);
      bytes += data.length;
      if (data.every((b) => b === 0)) zeroRequests++;
      for (const b of data) seen.add(b);
    });
    report({
      kind: 'check',
      type: 'rng',
      device: spec.device.devicePath,
      requests: RNG_REQUESTS,
      bytes,
      zeroRequests,
      distinct: seen.size,
    });
  } finally {
    describe('rng', spec.device.devicePath, driver, [0]);
    close();
  }
}

async function blk(spec: UioDeviceSpec): Promise<void> {
  const { driver, close } = openOnUio(spec, (t, memory) =>
    VirtioBlk.open(t, { memory, requestTimeoutMs: REQUEST_TIMEOUT_MS }),
  );
  try {
    const blocks = PATTERN_BYTES / BLOCK;
    const expected = pattern(PATTERN_BYTES);
    let readMismatches = 0;
    await inFlight(DEPTH.blkRead, blocks, async (i) => {
      const data = await driver.read((i * BLOCK) / 512, BLOCK);
      if (!data.equals(expected.subarray(i * BLOCK, (i + 1) * BLOCK))) readMismatches++;
    });
    // Our own pattern after the host's: written at depth, then read back at depth.
    const ours = Buffer.from(expected.map((b) => b ^ 0xa5));
    const base = PATTERN_BYTES / 512;
    await inFlight(DEPTH.blkWrite, blocks, (i) =>
      driver.write(base + (i * BLOCK) / 512, ours.subarray(i * BLOCK, (i + 1) * BLOCK)),
    );
    await driver.flush();
    let writeMismatches = 0;
    await inFlight(DEPTH.blkWrite, blocks, async (i) => {
      const data = await driver.read(base + (i * BLOCK) / 512, BLOCK);
      if (!data.equals(ours.subarray(i * BLOCK, (i + 1) * BLOCK))) writeMismatches++;
    });
    report({
      kind: 'check',
      type: 'blk',
      device: spec.device.devicePath,
      reads: 2 * blocks,
      writes: blocks,
      readMismatches,
      writeMismatches,
    });
  } finally {
    describe(
      'blk',
      spec.device.devicePath,
      driver,
      Array.from({ length: driver.info.queues }, (_, i) => i),
    );
    close();
  }
}

/** Reads exactly `bytes` from `stream` (which stays open). */
function readExactly(stream: Duplex, bytes: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (error?: Error): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).subarray(0, bytes));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= bytes) done();
    };
    const timer = setTimeout(() => done(new Error(`console echo: ${got} of ${bytes} bytes came back`)), timeoutMs);
    stream.on('data', onData);
    stream.resume();
  });
}

async function consoleEcho(spec: UioDeviceSpec): Promise<void> {
  // With MULTIPORT (QEMU offers it): port 0's receiveq and transmitq, and the control queues.
  const { driver, close } = openOnUio(spec, (t, memory) =>
    VirtioConsole.open(t, { memory, requestTimeoutMs: REQUEST_TIMEOUT_MS }),
  );
  try {
    const sent = Buffer.alloc(CONSOLE_CHUNKS * CONSOLE_CHUNK);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 10)) & 0xff;
    const back = readExactly(driver.stream, sent.length, 15_000);
    // Chunks written back to back: the transmitq holds several at once, the echo fills several receive buffers.
    const writes = inFlight(
      DEPTH.console,
      CONSOLE_CHUNKS,
      (i) =>
        new Promise<void>((resolve, reject) =>
          driver.stream.write(sent.subarray(i * CONSOLE_CHUNK, (i + 1) * CONSOLE_CHUNK), (error) =>
            error ? reject(error) : resolve(),
          ),
        ),
    );
    const [echoed] = await Promise.all([back, writes]);
    report({
      kind: 'check',
      type: 'console',
      device: spec.device.devicePath,
      bytes: sent.length,
      echoed: echoed.length,
      equal: echoed.equals(sent),
    });
  } finally {
    describe('console', spec.device.devicePath, driver, [
      portReceiveQueue(0),
      portTransmitQueue(0),
      ConsoleQueue.CONTROL_RECEIVE,
      ConsoleQueue.CONTROL_TRANSMIT,
    ]);
    close();
  }
}

const RUNS: Record<number, (spec: UioDeviceSpec) => Promise<void>> = {
  [DeviceId.ENTROPY]: rng,
  [DeviceId.BLOCK]: blk,
  [DeviceId.CONSOLE]: consoleEcho,
};

async function main(): Promise<void> {
  const reports = scan();
  for (const r of reports) if (r.result && !r.result.empty) report({ kind: 'transport', ...describeReport(r) });
  for (const r of reports) {
    const run = r.result && !r.result.empty ? RUNS[r.result.deviceId] : undefined;
    if (!run || r.spec.kind !== 'uio') continue;
    try {
      await run(r.spec);
    } catch (error) {
      // One device's failure is a result line (the test judges it) and the others still run.
      const { name, code, message } = error as { name?: string; code?: string; message?: string };
      report({ kind: 'error', device: r.spec.device.devicePath, name, code, message: message ?? String(error) });
    }
  }
}

if (require.main === module) runMain(main);
