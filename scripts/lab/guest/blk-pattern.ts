/**
 * Runs in the lab guest: writes (then flushes) or reads back a known
 * pattern in the first `bytes` of the virtio-blk device on UIO, and reports
 * its SHA-256 — so the host can check the image file and a later boot.
 *
 *   node scripts/lab/guest/blk-pattern.js write|read <bytes>
 */
import { createHash } from 'node:crypto';
import { VirtioBlk } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

/** Sector n holds its own number and a running byte pattern; the host builds the same. */
export function pattern(bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  for (let sector = 0; sector * 512 < bytes; sector++) data.writeUInt32LE(sector, sector * 512);
  return data;
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  const bytes = Number(process.argv[3] ?? 1 << 20);
  const found = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK);
  if (!found) throw new Error('no virtio-blk transport on UIO');
  const memory = DmaPool.hugetlb();
  const blk = VirtioBlk.open(openTransport(found.spec as UioDeviceSpec), { memory });
  try {
    let data: Buffer;
    if (mode === 'write') {
      data = pattern(bytes);
      await blk.write(0, data);
      await blk.flush();
    } else {
      data = await blk.read(0, bytes);
    }
    report({ kind: 'blk-pattern', mode, bytes, sha256: createHash('sha256').update(data).digest('hex') });
  } finally {
    blk.close();
    memory.close();
  }
}

if (require.main === module) runMain(main);
