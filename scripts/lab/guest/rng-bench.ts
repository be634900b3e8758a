/**
 * Runs in the lab guest: entropy throughput through the kernel's
 * virtio-rng (/dev/hwrng, read 4 KiB at a time) and through our VirtioRng on
 * the virtio-rng transport left on UIO (4 KiB requests, one at a time and
 * 8 in flight), each for the given time.
 *
 *   node scripts/lab/guest/rng-bench.js <seconds>
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { VirtioRng } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

const CHUNK = 4096;

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const kernelFd = openSync('/dev/hwrng', 'r');
  const buffer = Buffer.alloc(CHUNK);
  let bytes = 0;
  let started = process.hrtime.bigint();
  let end = started + BigInt(seconds * 1e9);
  try {
    while (process.hrtime.bigint() < end) bytes += readSync(kernelFd, buffer, 0, CHUNK, null);
  } finally {
    closeSync(kernelFd);
  }
  report({ kind: 'rng-bench', driver: 'kernel', inFlight: 1, bytesPerSecond: bytes / (Number(process.hrtime.bigint() - started) / 1e9) });

  const found = scan().find((r) => r.result?.deviceId === DeviceId.ENTROPY);
  if (!found) throw new Error('no virtio-rng transport on UIO');
  const memory = DmaPool.hugetlb();
  const transport = openTransport(found.spec as UioDeviceSpec);
  const rng = VirtioRng.open(transport, { memory, requestBytes: CHUNK });
  try {
    for (const inFlight of [1, 8]) {
      bytes = 0;
      started = process.hrtime.bigint();
      end = started + BigInt(seconds * 1e9);
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (process.hrtime.bigint() < end) bytes += (await rng.read(CHUNK)).length;
        }),
      );
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
      report({ kind: 'rng-bench', driver: 'ours', inFlight, bytesPerSecond: bytes / elapsed, interrupts: transport.stats.interrupts });
    }
  } finally {
    rng.close();
    memory.close();
  }
}

runMain(main);
