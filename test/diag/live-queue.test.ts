import { DmaError, SyscallError } from '../../lib/errors';
import { PhysicalMemory, type NativeDmaMemory, type RegisterBlock } from '../../lib/platform';
import { readLiveQueue, type LiveQueueDump, type LiveRingDump, type RingMemory } from '../../lib/diag';
import { MMIO_MAGIC_VALUE, MmioRegister as R, PackedDesc, VirtqDesc } from '../../lib/spec';

/**
 * Foreign memory: 64 KiB at device address BASE, written by the test as another driver would; nothing else is readable.
 */
const BASE = 0x10000n;
function foreignMemory(): { bytes: DataView; memory: RingMemory; reads: number[] } {
  const buffer = new ArrayBuffer(0x10000);
  const reads: number[] = [];
  const memory: RingMemory = {
    read(address, length) {
      reads.push(length);
      const offset = address - BASE;
      if (offset < 0n || offset + BigInt(length) > BigInt(buffer.byteLength))
        throw new DmaError(DmaError.NOT_PRESENT, `nothing at 0x${address.toString(16)}`);
      return new Uint8Array(buffer, Number(offset), length).slice();
    },
  };
  return { bytes: new DataView(buffer), memory, reads };
}

/** A register window holding fixed values; records what is written. */
function registers(
  values: Partial<Record<keyof typeof R, number>>,
  version = 2,
): { regs: RegisterBlock; writes: [number, number][] } {
  const byOffset = new Map<number, number>(
    Object.entries({ MagicValue: MMIO_MAGIC_VALUE, Version: version, DeviceID: 42, Status: 0xf, ...values }).map(
      ([name, v]) => [R[name as keyof typeof R], v],
    ),
  );
  const writes: [number, number][] = [];
  const unused = (): never => {
    throw new Error('not used by readLiveQueue');
  };
  const regs: RegisterBlock = {
    size: 0x200,
    closed: false,
    label: 'foreign',
    readl: (offset) => byOffset.get(offset) ?? 0,
    writel: (offset, value) => void writes.push([offset, value]),
    readb: unused,
    readw: unused,
    writeb: unused,
    writew: unused,
    copyOut: unused,
    copyIn: unused,
    pollUntil: unused,
    close: unused,
  };
  return { regs, writes };
}

// A split ring of 8 in the foreign memory, Version 2 layout: table, avail ring, used ring.
const SIZE = 8;
const DESC = 0x10000n;
const AVAIL = 0x10100n;
const USED = 0x10200n;
const at = (address: bigint): number => Number(address - BASE);

function descriptor(
  bytes: DataView,
  table: bigint,
  slot: number,
  addr: number,
  len: number,
  flags: number,
  word14: number,
): void {
  const o = at(table) + 16 * slot;
  bytes.setBigUint64(o, BigInt(addr), true);
  bytes.setUint32(o + 8, len, true);
  bytes.setUint16(o + 12, flags, true);
  bytes.setUint16(o + 14, word14, true);
}

/** Avail ring entries `heads` from position 0, avail.idx = heads.length unless given; used.idx 0. */
function avail(bytes: DataView, heads: number[], availIdx = heads.length): void {
  heads.forEach((head, i) => bytes.setUint16(at(AVAIL) + 4 + 2 * i, head, true));
  bytes.setUint16(at(AVAIL) + 2, availIdx, true);
}

function ringOf(dump: LiveQueueDump): LiveRingDump {
  if (!('ring' in dump.memory)) throw new Error(`no ring: ${JSON.stringify(dump.memory)}`);
  return dump.memory;
}

const modern = (extra: Partial<Record<keyof typeof R, number>> = {}) =>
  registers({
    QueueNumMax: SIZE,
    QueueReady: 1,
    QueueDescLow: Number(DESC),
    QueueDriverLow: Number(AVAIL),
    QueueDeviceLow: Number(USED),
    ...extra,
  });

describe('readLiveQueue', () => {
  test('writes only QueueSel, reads the address registers when they answer, and walks the available chains', () => {
    const { bytes, memory } = foreignMemory();
    descriptor(bytes, DESC, 2, 0x9000, 100, VirtqDesc.F_NEXT, 5);
    descriptor(bytes, DESC, 5, 0x9100, 50, VirtqDesc.F_WRITE, 0);
    avail(bytes, [2]);
    const { regs, writes } = modern();
    const dump = readLiveQueue(regs, 3, memory);
    expect(writes).toEqual([[R.QueueSel, 3]]);
    expect(dump).toMatchObject({
      index: 3,
      live: true,
      size: SIZE,
      sizeFrom: 'QueueNumMax',
      format: 'split',
      formatFrom: 'default',
      addressesFrom: 'registers',
      queueSelLeftAt: 3,
    });
    expect(dump.addresses).toEqual({ desc: '0x10000', driver: '0x10100', device: '0x10200' });
    const ring = ringOf(dump);
    expect(ring.ring).toMatchObject({ availIdx: 1, usedIdx: 0 });
    expect(ring.outstanding).toEqual([
      {
        id: 2,
        descriptors: [
          { slot: 2, addr: '0x9000', len: 100, flags: 1, flagNames: ['NEXT'], next: 5 },
          { slot: 5, addr: '0x9100', len: 50, flags: 2, flagNames: ['WRITE'], next: 0 },
        ],
      },
    ]);
    expect(ring.problems).toEqual([]);
    expect(JSON.parse(JSON.stringify(dump))).toEqual(dump);
  });

  test('a descriptor next cycle ends the chain with a problem', () => {
    const { bytes, memory } = foreignMemory();
    descriptor(bytes, DESC, 0, 0x9000, 1, VirtqDesc.F_NEXT, 1);
    descriptor(bytes, DESC, 1, 0x9000, 1, VirtqDesc.F_NEXT, 0);
    avail(bytes, [0]);
    const ring = ringOf(readLiveQueue(modern().regs, 0, memory));
    expect(ring.outstanding[0].descriptors.map((d) => d.slot)).toEqual([0, 1]);
    expect(ring.outstanding[0].descriptors[1].problem).toMatch(/loops back/);
    expect(ring.problems).toEqual([]); // a chain problem is on the descriptor
  });

  test('a next or head outside the table and an absurd avail.idx are reported without reading outside the ring', () => {
    const { bytes, memory, reads } = foreignMemory();
    descriptor(bytes, DESC, 0, 0x9000, 1, VirtqDesc.F_NEXT, 99);
    avail(bytes, [0, 200]);
    const ring = ringOf(readLiveQueue(modern().regs, 0, memory));
    expect(ring.outstanding[0].descriptors[0].problem).toMatch(/next 99 is outside/);
    expect(ring.outstanding[1]).toMatchObject({ id: 200, descriptors: [], problem: expect.stringMatching(/outside/) });
    expect(ring.problems).toEqual([expect.stringMatching(/head 200/)]);

    avail(bytes, [], 40000);
    const absurd = ringOf(readLiveQueue(modern().regs, 0, memory));
    expect(absurd.outstanding).toEqual([]);
    expect(absurd.problems).toEqual([expect.stringMatching(/40000 ahead of used.idx 0/)]);
    expect(Math.max(...reads)).toBeLessThanOrEqual(16 * SIZE);
  });

  test('indirect tables: entries read, a bad length and unreadable memory reported', () => {
    const { bytes, memory } = foreignMemory();
    const table = 0x10800n;
    descriptor(bytes, table, 0, 0xa000, 10, VirtqDesc.F_NEXT, 1);
    descriptor(bytes, table, 1, 0xb000, 20, VirtqDesc.F_WRITE | VirtqDesc.F_NEXT, 1); // loops onto itself
    descriptor(bytes, DESC, 0, Number(table), 32, VirtqDesc.F_INDIRECT, 0);
    descriptor(bytes, DESC, 1, Number(table), 30, VirtqDesc.F_INDIRECT, 0);
    descriptor(bytes, DESC, 2, 0x7fff0000, 32, VirtqDesc.F_INDIRECT, 0);
    avail(bytes, [0, 1, 2]);
    const [good, odd, away] = ringOf(readLiveQueue(modern().regs, 0, memory)).outstanding;
    expect(good.descriptors[0].indirect!.map((d) => [d.addr, d.len, d.flagNames])).toEqual([
      ['0xa000', 10, ['NEXT']],
      ['0xb000', 20, ['NEXT', 'WRITE']],
    ]);
    expect(good.descriptors[0].indirect![1].problem).toMatch(/loops back/);
    expect(odd.descriptors[0].problem).toMatch(/not a whole number/);
    expect(away.descriptors[0].problem).toMatch(/could not be read/);
  });

  test('packed: the driver position is inferred from AVAIL bits; a chain with NEXT everywhere stays bounded', () => {
    const { bytes, memory } = foreignMemory();
    const { regs } = modern();
    // Round 1: slots 0–1 one chain (id 4), slot 2 one descriptor (id 6); the rest never written (round 0).
    const avail1 = PackedDesc.F_AVAIL;
    // Packed descriptors: the Buffer ID at byte 12, the flags at 14 (§2.8.13).
    descriptor(bytes, DESC, 0, 0x9000, 8, 4, avail1 | PackedDesc.F_NEXT);
    descriptor(bytes, DESC, 1, 0x9100, 8, 4, avail1 | PackedDesc.F_WRITE);
    descriptor(bytes, DESC, 2, 0x9200, 8, 6, avail1 | PackedDesc.F_WRITE);
    const ring = ringOf(readLiveQueue(regs, 0, memory, { format: 'packed' }));
    expect(ring.inferred).toEqual({ nextAvail: 3, availWrap: 1 });
    expect(ring.outstanding.map((o) => [o.id, o.descriptors.map((d) => d.slot)])).toEqual([
      [4, [0, 1]],
      [6, [2]],
    ]);
    expect(ring.ring).toMatchObject({ format: 'packed', driverEvent: { flagName: 'ENABLE' } });

    // Every slot available in round 1 with NEXT set: one chain, cut at the ring's size.
    for (let slot = 0; slot < SIZE; slot++) descriptor(bytes, DESC, slot, 0x9000, 8, 300, avail1 | PackedDesc.F_NEXT);
    const looping = ringOf(readLiveQueue(regs, 0, memory, { format: 'packed' }));
    expect(looping.outstanding).toHaveLength(1);
    expect(looping.outstanding[0].descriptors).toHaveLength(SIZE);
    expect(looping.problems).toEqual([expect.stringMatching(/goes on past 8/), expect.stringMatching(/Buffer ID 300/)]);
  });

  test('unknowns are said: zero address registers, live legacy queue without size, absent queue, not live', () => {
    const { memory } = foreignMemory();
    const zero = readLiveQueue(registers({ QueueNumMax: SIZE, QueueReady: 1 }).regs, 0, memory);
    expect(zero.addressesFrom).toBe('not readable');
    expect(zero.memory).toEqual({
      error: { code: 'ERR_VIRTIO_STATE', message: expect.stringMatching(/addresses are unknown/) },
    });

    const legacy = registers({ QueuePFN: 0x10, QueueNumMax: SIZE }, 1);
    const unsized = readLiveQueue(legacy.regs, 0, memory);
    expect(unsized).toMatchObject({
      version: 1,
      live: true,
      sizeFrom: 'unknown',
      memory: { error: { code: 'ERR_VIRTIO_STATE' } },
    });
    const sized = readLiveQueue(legacy.regs, 0, memory, { size: SIZE, pageSize: 4096 });
    expect(sized).toMatchObject({
      addressesFrom: 'QueuePFN',
      addresses: { desc: '0x10000', driver: '0x10080', device: '0x11000' },
    });
    expect(ringOf(sized).outstanding).toEqual([]);
    // §4.2.4: QueueNumMax is not read while QueuePFN is set.
    expect(sized.registers.QueueNumMax).toBeUndefined();

    expect(readLiveQueue(registers({ QueueNumMax: 0 }).regs, 5, memory).memory).toMatchObject({
      error: { code: 'ERR_VIRTIO_QUEUE_UNAVAILABLE' },
    });
    expect(readLiveQueue(registers({ QueueNumMax: SIZE, QueueReady: 0 }).regs, 0, memory).memory).toEqual({
      skipped: expect.stringMatching(/not live/),
    });
  });

  test('unreadable ring memory gives the typed error, with its hint', () => {
    const { memory } = foreignMemory();
    const away = readLiveQueue(modern({ QueueDescLow: 0x7000_0000 }).regs, 0, memory);
    expect(away.memory).toMatchObject({ error: { code: 'ERR_VIRTIO_DMA_NOT_PRESENT' } });

    const refusing = new PhysicalMemory(() => {
      throw new SyscallError({
        message: 'mmap /dev/mem',
        errno: -1,
        code: 'EPERM',
        syscall: 'mmap',
        path: '/dev/mem',
        hint: 'CONFIG_STRICT_DEVMEM refuses RAM',
      });
    });
    const denied = readLiveQueue(modern().regs, 0, refusing);
    expect(denied).toMatchObject({
      live: true,
      memory: { error: { code: 'EPERM', hint: 'CONFIG_STRICT_DEVMEM refuses RAM' } },
    });
  });

  test('PhysicalMemory copies the mapped bytes and unmaps', () => {
    let freed = 0;
    const view = Uint8Array.from([9, 8, 7, 6]).buffer;
    const reader = new PhysicalMemory((base, size) => {
      expect([base, size]).toEqual([0x1234n, 3]);
      return {
        view,
        iova: base,
        size,
        kind: 'physical',
        freed: false,
        translate: () => base,
        free: () => void freed++,
      } as NativeDmaMemory;
    });
    expect([...reader.read(0x1234n, 3)]).toEqual([9, 8, 7]);
    expect(freed).toBe(1);
    expect(() => reader.read(0x1234n, 0)).toThrow(RangeError);
  });
});
