/**
 * Runs in the lab guest: entropy throughput through the kernel's
 * virtio-rng (/dev/hwrng, read 4 KiB at a time) and through our VirtioRng on
 * the virtio-rng transport left on UIO (4 KiB requests, one at a time and
 * 8 in flight), interleaved: after an unmeasured warm-up of both, `rounds`
 * rounds of kernel, ours 1, ours 8, each for the given time, so each of
 * ours' figures has a kernel figure of its own round to be divided by.
 * The warm-up (default min(1, S/2) s each) is the kernel's read for that
 * long, then ours at each in-flight count for half as long again, twice.
 *
 *   node scripts/lab/guest/rng-bench.js <seconds> [rounds] [warm-up seconds]
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { VirtioRng } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

const CHUNK = 4096;
const IN_FLIGHT = [1, 8];

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const rounds = Number(process.argv[3] ?? 1);
  const warmUp = Number(process.argv[4] ?? Math.min(1, seconds / 2));
  if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1 || !(warmUp >= 0)) {
    throw new RangeError('usage: rng-bench.js <seconds> [rounds] [warm-up seconds]');
  }
  const found = scan().find((r) => r.result?.deviceId === DeviceId.ENTROPY);
  if (!found) throw new Error('no virtio-rng transport on UIO');
  const kernelFd = openSync('/dev/hwrng', 'r');
  const buffer = Buffer.alloc(CHUNK);
  const memory = DmaPool.hugetlb();
  const transport = openTransport(found.spec as UioDeviceSpec);
  const rng = VirtioRng.open(transport, { memory, requestBytes: CHUNK });

  /** Bytes per second from the kernel's /dev/hwrng for `s` seconds. */
  const kernel = (s: number): number => {
    let bytes = 0;
    const started = process.hrtime.bigint();
    const end = started + BigInt(Math.round(s * 1e9));
    while (process.hrtime.bigint() < end) bytes += readSync(kernelFd, buffer, 0, CHUNK, null);
    return bytes / (Number(process.hrtime.bigint() - started) / 1e9);
  };
  /** Bytes per second from ours with `inFlight` requests for `s` seconds. */
  const ours = async (inFlight: number, s: number): Promise<number> => {
    let bytes = 0;
    const started = process.hrtime.bigint();
    const end = started + BigInt(Math.round(s * 1e9));
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (process.hrtime.bigint() < end) bytes += (await rng.read(CHUNK)).length;
      }),
    );
    return bytes / (Number(process.hrtime.bigint() - started) / 1e9);
  };

  try {
    // Warm-up, not measured: the JIT under TCG (ours), the device and the path through it (both).
    kernel(warmUp);
    for (let cycle = 0; cycle < 2; cycle++) for (const inFlight of IN_FLIGHT) await ours(inFlight, warmUp / 2);
    for (let round = 1; round <= rounds; round++) {
      report({ kind: 'rng-bench', driver: 'kernel', round, inFlight: 1, bytesPerSecond: kernel(seconds) });
      for (const inFlight of IN_FLIGHT) {
        const interruptsBefore = transport.stats.interrupts;
        const bytesPerSecond = await ours(inFlight, seconds);
        report({
          kind: 'rng-bench',
          driver: 'ours',
          round,
          inFlight,
          bytesPerSecond,
          interrupts: transport.stats.interrupts - interruptsBefore,
        });
      }
    }
  } finally {
    closeSync(kernelFd);
    rng.close();
    memory.close();
  }
}

runMain(main);
