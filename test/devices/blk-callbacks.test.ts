/**
 * VirtioBlk.readInto() and writeFrom(): read() and write() with a
 * Node-style callback instead of a promise (the lower-level API of the hot
 * path). The callback is called once, never from within the call; the
 * same checks, errors and ownership rules as the promise API hold.
 */
import { ClosedError } from '../../lib/errors';
import { VirtioBlk } from '../../lib/devices';
import { BlkModel, type SimDeviceModel } from '../../lib/sim';
import { gateModel } from '../support/gated-model';
import { catchRethrown } from '../support/rethrown';
import { SIM_VARIANTS, simRig, turns, type SimRig } from '../support/sim-rig';

const SECTOR = 512;

function patternDisk(sectors = 64): Uint8Array {
  const disk = new Uint8Array(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) disk.fill(s + 1, s * SECTOR, (s + 1) * SECTOR);
  return disk;
}

/**
 * Calls `start` with a callback; resolves with the callback's arguments, and says whether it came synchronously or more
 * than once.
 */
function viaCallback<T>(
  start: (callback: (error: Error | null, result?: T) => void) => void,
): Promise<{ error: Error | null; result?: T; sync: boolean; calls: () => number }> {
  return new Promise((resolve) => {
    let returned = false;
    let calls = 0;
    start((error, result) => {
      calls++;
      resolve({ error, result, sync: !returned, calls: () => calls });
    });
    returned = true;
  });
}

describe.each(SIM_VARIANTS)('VirtioBlk callbacks on the %s sim', (_label, variant) => {
  let rig: SimRig | undefined;
  afterEach(() => {
    const violations = rig?.close();
    rig = undefined;
    expect(violations ?? []).toEqual([]);
  });

  test('writeFrom, readInto with DMA buffers: bytes round-trip, each callback once, never synchronously', async () => {
    const model = new BlkModel({ disk: patternDisk() });
    rig = simRig(variant, model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, queueMode: 'poll' });
    const out = blk.allocBuffer(2 * SECTOR);
    out.fill(0x5a);
    const wrote = await viaCallback<void>((cb) => blk.writeFrom(7, out, cb));
    expect(wrote.error).toBeNull();
    expect(wrote.sync).toBe(false);
    expect([...new Set(model.disk.subarray(7 * SECTOR, 9 * SECTOR))]).toEqual([0x5a]);
    const into = blk.allocBuffer(3 * SECTOR);
    const read = await viaCallback<Buffer>((cb) => blk.readInto(6, into, cb));
    expect(read.error).toBeNull();
    expect(read.sync).toBe(false);
    expect(read.result).toBe(into);
    expect([into[0], into[SECTOR], into[2 * SECTOR]]).toEqual([7, 0x5a, 0x5a]);
    await turns();
    expect(read.calls()).toBe(1);
    expect(wrote.calls()).toBe(1);
    blk.close();
  });

  test.each(['interrupt', 'poll', 'hybrid'] as const)(
    'a QD1 readInto() loop (%s) tells the transport busy once and idle once, not per request',
    async (queueMode) => {
      rig = simRig(variant, new BlkModel({ disk: patternDisk() }));
      const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, queueMode });
      const calls: boolean[] = [];
      const setBusy = rig.transport.setBusy.bind(rig.transport);
      rig.transport.setBusy = (index: number, busy: boolean): void => {
        calls.push(busy);
        setBusy(index, busy);
      };
      const into = blk.allocBuffer(SECTOR);
      const reads = 50;
      const done = await new Promise<number>((resolve, reject) => {
        let n = 0;
        const next = (): void => blk.readInto(n % 64, into, after);
        const after = (error: Error | null): void => {
          if (error) return reject(error);
          if (++n < reads) next();
          else resolve(n);
        };
        next();
      });
      expect(done).toBe(reads);
      // Each completion's callback submits the next request before the reap ends: the queue never looked idle.
      expect(calls).toEqual([true, false]);
      blk.close();
    },
  );

  test('sectors past 2^32 (and bigints) reach the device whole: the header carries both halves', async () => {
    // A disk of 2^40 sectors that stores nothing: it records each request's sector and fills reads with its low byte.
    const sectors: bigint[] = [];
    const config = new Uint8Array(0x40);
    new DataView(config.buffer).setBigUint64(0, 2n ** 40n, true);
    const model: SimDeviceModel = {
      deviceId: 2,
      features: 0n,
      queueSizes: [16],
      config,
      handle(request) {
        const header = request.readable[0];
        const sector = new DataView(header.buffer, header.byteOffset, 16).getBigUint64(8, true);
        sectors.push(sector);
        const data = request.writable.slice(0, -1);
        for (const part of data) part.fill(Number(sector & 0xffn));
        request.writable[request.writable.length - 1][0] = 0;
        return request.writableBytes;
      },
    };
    rig = simRig(variant, model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, queueMode: 'poll' });
    const into = blk.allocBuffer(SECTOR);
    const wanted = [2 ** 32 + 0x37, 2 ** 40 - 1, 0x1234_5678_9a, 5];
    for (const sector of wanted) {
      const read = await viaCallback<Buffer>((cb) => blk.readInto(sector, into, cb));
      expect(read.error).toBeNull();
      expect(into[0]).toBe(sector % 256);
    }
    const big = await viaCallback<Buffer>((cb) => blk.readInto(2n ** 39n + 3n, into, cb));
    expect(big.error).toBeNull();
    expect(sectors).toEqual([...wanted.map(BigInt), 2n ** 39n + 3n]);
    const past = await viaCallback<Buffer>((cb) => blk.readInto(2 ** 40, into, cb));
    expect(past.error).toBeInstanceOf(RangeError);
    expect(sectors).toHaveLength(wanted.length + 1);
    blk.close();
  });

  test('a plain Buffer and a big one go through the promise path and still call back once', async () => {
    rig = simRig(variant, new BlkModel({ disk: patternDisk() }));
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, maxRequestBytes: SECTOR });
    const plain = Buffer.alloc(3 * SECTOR);
    const read = await viaCallback<Buffer>((cb) => blk.readInto(1, plain, cb));
    expect(read.error).toBeNull();
    expect(read.sync).toBe(false);
    expect([plain[0], plain[SECTOR], plain[2 * SECTOR]]).toEqual([2, 3, 4]);
    blk.close();
  });

  test('bad input: a bad range or closed device is a later callback error; a bad callback throws', async () => {
    rig = simRig(variant, new BlkModel({ disk: patternDisk(8) }));
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    const buffer = blk.allocBuffer(SECTOR);
    const beyond = await viaCallback<Buffer>((cb) => blk.readInto(8, buffer, cb));
    expect(beyond.error).toBeInstanceOf(RangeError);
    expect(beyond.sync).toBe(false);
    const odd = await viaCallback<void>((cb) => blk.writeFrom(0, Buffer.alloc(100), cb));
    expect(odd.error).toBeInstanceOf(RangeError);
    expect(() => blk.readInto(0, buffer, undefined as never)).toThrow(TypeError);
    blk.close();
    const closed = await viaCallback<Buffer>((cb) => blk.readInto(0, Buffer.alloc(SECTOR), cb));
    expect(closed.error).toBeInstanceOf(ClosedError);
  });

  test('a timed-out read calls back with TimeoutError; its slot is not reused until the chain comes back', async () => {
    const gate = gateModel(new BlkModel({ disk: patternDisk() }));
    rig = simRig(variant, gate.model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: 100 });
    const first = blk.allocBuffer(SECTOR);
    const timedOut = await viaCallback<Buffer>((cb) => blk.readInto(0, first, cb));
    expect(timedOut.error).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    // The next read must not get the first one's header slot: the device, releasing late, writes the first's status
    // there.
    const second = blk.allocBuffer(SECTOR);
    const next = viaCallback<Buffer>((cb) => blk.readInto(1, second, cb));
    await turns();
    expect(gate.held).toBe(2);
    gate.release(1);
    gate.release(0);
    const done = await next;
    expect(done.error).toBeNull();
    expect([...new Set(second)]).toEqual([2]);
    await turns();
    expect(timedOut.calls()).toBe(1);
    blk.close();
  });

  test('a callback that throws surfaces as uncaught (rethrown in a microtask) and the queue goes on', async () => {
    rig = simRig(variant, new BlkModel({ disk: patternDisk() }));
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    const buffer = blk.allocBuffer(SECTOR);
    const { thrown, restore } = catchRethrown();
    const boom = new Error('from the callback');
    try {
      await new Promise<void>((resolve) =>
        blk.readInto(0, buffer, () => {
          resolve();
          throw boom;
        }),
      );
      await turns(2);
      expect(thrown).toEqual([boom]);
    } finally {
      restore();
    }
    const after = await viaCallback<Buffer>((cb) => blk.readInto(2, buffer, cb));
    expect(after.error).toBeNull();
    expect([...new Set(buffer)]).toEqual([3]);
    blk.close();
  });
});
