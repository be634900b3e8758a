import type { SimRequest } from '../../lib/sim';
import { MmioInterrupt } from '../../lib/spec';
import { echoRequest } from '../support/echo-request';
import { IN_ORDER, setupPackedQueue, TRANSPORT_PACKED, type PackedTestRing } from './packed-test-driver';
import {
  R,
  type TestDriver,
  TestModel,
  type TestRing,
  TRANSPORT_V2,
  turns,
  useTestDrivers,
  VirtqDesc,
} from './sim-test-driver';

const { F_NEXT, F_WRITE, F_INDIRECT } = VirtqDesc;

const rig = useTestDrivers();

type Held = { request: SimRequest; complete: (len?: number) => void }[];

/** A model that echoes, now or (with `held`) when the test releases each request. */
function model(size: number, held?: Held): TestModel {
  const m = new TestModel({ queueSizes: [size] });
  if (held)
    m.handler = (request) =>
      new Promise<number>((resolve) => held.push({ request, complete: (len) => resolve(len ?? echoRequest(request)) }));
  return m;
}

function liveSplit(
  size: number,
  batch: number | undefined,
  held?: Held,
  transport = TRANSPORT_V2 | IN_ORDER,
): { r: TestDriver; ring: TestRing } {
  const r = rig(model(size, held), { transportFeatures: transport, inOrderBatch: batch });
  r.init();
  const ring = r.setupQueue(0, size);
  r.driverOk();
  return { r, ring };
}

/**
 * A packed ring with IN_ORDER; without `held` the model fills every writable byte, so any buffer may be skipped in a
 * batch.
 */
function livePacked(size: number, batch: number | undefined, held?: Held): { r: TestDriver; ring: PackedTestRing } {
  const m = model(size, held);
  if (!held) m.handler = (request) => request.writableBytes;
  const r = rig(m, { transportFeatures: TRANSPORT_PACKED | IN_ORDER, inOrderBatch: batch });
  r.init();
  const ring = setupPackedQueue(r, 0, size, true);
  r.driverOk();
  return { r, ring };
}

/**
 * A split driver that uses descriptors in ring order (§2.7.5): each chain of `readable` + 1 writable descriptors starts
 * where the last ended.
 */
class InOrderSplitDriver {
  next = 0;
  readonly heads: number[] = [];
  constructor(
    private readonly r: TestDriver,
    private readonly ring: TestRing,
  ) {}

  add(readable: number, outLen = readable): number {
    const head = this.next;
    const size = this.ring.size;
    for (let i = 0; i <= readable; i++) {
      const at = (head + i) % size;
      const last = i === readable;
      const buffer = this.r.buffer(last ? outLen : Uint8Array.of(i + 1));
      this.ring.setDesc(at, {
        addr: buffer.iova,
        len: last ? outLen : 1,
        flags: last ? F_WRITE : F_NEXT,
        next: (at + 1) % size,
      });
    }
    this.next = (head + readable + 1) % size;
    this.heads.push(head);
    this.ring.publish(head);
    return head;
  }
}

describe('VIRTIO_F_IN_ORDER on the split ring (virtio 1.2 §2.7.9)', () => {
  test('not offered by default', () => {
    const r = rig(new TestModel());
    r.init();
    expect(r.negotiated & IN_ORDER).toBe(0n);
  });

  test('inOrderBatch 4: six buffers, two used entries at the offsets of the batches’ first buffers, idx + 6', () => {
    const { r, ring } = liveSplit(16, 4);
    const driver = new InOrderSplitDriver(r, ring);
    for (let n = 0; n < 6; n++) driver.add(1);
    expect(driver.heads).toEqual([0, 2, 4, 6, 8, 10]);
    r.sim.process();
    expect(ring.usedIdx).toBe(6);
    expect([0, 1, 2, 3, 4, 5].map((i) => ring.usedElement(i))).toEqual([
      { id: 6, len: 1 }, // the batch of heads 0, 2, 4, 6 names its last buffer
      { id: 0, len: 0 }, // skipped entries are not written
      { id: 0, len: 0 },
      { id: 0, len: 0 },
      { id: 10, len: 1 }, // the batch of heads 8, 10
      { id: 0, len: 0 },
    ]);
    expect(r.sim.stats).toMatchObject({ interrupts: 1, requests: 6 });
    expect(r.sim.queueState(0)).toMatchObject({ usedIdx: 6, inFlight: 0 });
    expect(r.sim.violations).toEqual([]);
  });

  test('completions out of order are held until the earlier ones are done, then used as one batch', async () => {
    const held: Held = [];
    const { r, ring } = liveSplit(8, 4, held);
    const driver = new InOrderSplitDriver(r, ring);
    for (let n = 0; n < 3; n++) driver.add(1);
    r.sim.process();
    held[2].complete();
    held[1].complete();
    await turns();
    expect(ring.usedIdx).toBe(0);
    expect(r.sim.queueState(0).inFlight).toBe(3);
    held[0].complete();
    await turns();
    expect(ring.usedIdx).toBe(3);
    expect(ring.usedElement(0)).toEqual({ id: 4, len: 1 });
    expect(r.sim.readl(R.InterruptStatus)).toBe(MmioInterrupt.VRING);
    expect(r.sim.violations).toEqual([]);
  });

  /** Three one-buffer requests the model completes 1, 2, 0; returns the ring after. */
  async function completeOutOfOrder(batch: number | undefined, transport?: bigint): Promise<TestRing> {
    const held: Held = [];
    const { r, ring } = liveSplit(8, batch, held, transport);
    const driver = new InOrderSplitDriver(r, ring);
    for (let n = 0; n < 3; n++) driver.add(1);
    r.sim.process();
    held[1].complete();
    held[2].complete();
    held[0].complete();
    await turns();
    return ring;
  }

  test('default inOrderBatch 1: still in order, one entry per buffer', async () => {
    const ring = await completeOutOfOrder(undefined);
    expect(ring.usedIdx).toBe(3);
    expect([0, 1, 2].map((i) => ring.usedElement(i).id)).toEqual([0, 2, 4]);
  });

  test('without IN_ORDER negotiated inOrderBatch changes nothing: completion order, one entry each', async () => {
    const ring = await completeOutOfOrder(4, TRANSPORT_V2);
    expect([0, 1, 2].map((i) => ring.usedElement(i).id)).toEqual([2, 4, 0]);
  });

  test('a buffer the model did not fill ends its batch (skipped buffers are used completely)', () => {
    const { r, ring } = liveSplit(16, 8);
    const driver = new InOrderSplitDriver(r, ring);
    driver.add(1); // head 0: 1 byte in, 1 out
    driver.add(1, 4); // head 2: 1 byte in, 4 bytes of room: echo writes 1
    driver.add(1); // head 4
    driver.add(1); // head 6
    r.sim.process();
    expect(ring.usedIdx).toBe(4);
    expect(ring.usedElement(0)).toEqual({ id: 2, len: 1 });
    expect(ring.usedElement(2)).toEqual({ id: 6, len: 1 });
    expect(ring.usedElement(1)).toEqual({ id: 0, len: 0 });
  });

  test('200 chains of 1–3 descriptors around a table of 8, batches of 3: ring order kept, no violation', () => {
    const { r, ring } = liveSplit(8, 3);
    const driver = new InOrderSplitDriver(r, ring);
    let used = 0;
    let made = 0;
    while (made < 200) {
      let room = 8;
      const batch: number[] = [];
      while (made < 200 && room >= 3) {
        const readable = made % 3;
        batch.push(driver.add(readable, readable));
        room -= readable + 1;
        made++;
      }
      const before = ring.usedIdx;
      r.sim.process();
      const count = (ring.usedIdx - before) & 0xffff;
      expect(count).toBe(batch.length);
      // One entry per batch of 3, at the offset of each batch's first buffer, naming its last.
      for (let i = 0; i < batch.length; i += 3) {
        const last = batch[Math.min(i + 2, batch.length - 1)];
        expect(ring.usedElement(before + i).id).toBe(last);
      }
      used += count;
    }
    expect(used).toBe(200);
    expect(r.sim.violations).toEqual([]);
  });
});

describe('driver rules of IN_ORDER on the split ring (virtio 1.2 §2.7.5)', () => {
  test('in-order-descriptor-order: a chain that does not start after the previous one', () => {
    const { r, ring } = liveSplit(8, 1);
    const b = r.buffer(1);
    ring.setDesc(0, { addr: b.iova, len: 1, flags: F_WRITE });
    ring.setDesc(3, { addr: b.iova, len: 1, flags: F_WRITE });
    ring.publish(0, 3);
    r.sim.process();
    expect(r.rules).toEqual(['in-order-descriptor-order']);
    expect(r.sim.violations[0]).toMatchObject({
      section: '2.7.5',
      message: expect.stringMatching(/chain from head 3; .* starts at descriptor 1/),
    });
    expect(ring.usedIdx).toBe(2); // recorded, not breaking
  });

  test('in-order-next: next must be x + 1 (0 after the last entry)', () => {
    const { r, ring } = liveSplit(4, 1);
    const b = r.buffer(1);
    ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT, next: 2 });
    ring.setDesc(2, { addr: b.iova, len: 1, flags: F_WRITE });
    ring.publish(0);
    r.sim.process();
    expect(r.rules).toEqual(['in-order-next']);
    expect(r.sim.violations[0].section).toBe('2.7.5.2');
    // Wrapping correctly (3 → 0) is fine; the next chain starts at 3 since the bad one ended at 2.
    r.sim.clearViolations();
    ring.setDesc(3, { addr: b.iova, len: 1, flags: F_NEXT, next: 0 });
    ring.setDesc(0, { addr: b.iova, len: 1, flags: F_WRITE });
    ring.publish(3);
    r.sim.process();
    expect(r.sim.violations).toEqual([]);
    expect(ring.usedIdx).toBe(2);
  });

  test('in-order-indirect-next: indirect descriptors are sequential (next = i + 1)', () => {
    const { r, ring } = liveSplit(8, 1);
    const b = r.buffer(1);
    const table = r.pool.allocate(48, 16);
    const view = new DataView(table.view, table.offset, 48);
    ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT, next: 2 }, view);
    ring.setDesc(2, { addr: b.iova, len: 1, flags: F_WRITE }, view);
    ring.setDesc(0, { addr: table.iova, len: 48, flags: F_INDIRECT });
    ring.publish(0);
    r.sim.process();
    expect(r.rules).toEqual(['in-order-indirect-next']);
    expect(r.sim.violations[0].section).toBe('2.7.5.3.1');
    expect(ring.usedElement(0)).toEqual({ id: 0, len: 1 });
  });
});

describe('VIRTIO_F_IN_ORDER on the packed ring (virtio 1.2 §2.8.8)', () => {
  test('inOrderBatch 3: one used descriptor per batch, the last Buffer ID, skipping the batch’s descriptors', () => {
    const { r, ring } = livePacked(16, 3);
    const lengths = [1, 2, 3, 1, 2];
    const ids = lengths.map((n) =>
      ring.add(Array.from({ length: n }, (_, i) => ({ addr: r.buffer(1).iova, len: 1, write: i === n - 1 }))),
    );
    r.sim.process();
    const used = ring.popAll();
    expect(used.map((u) => ({ slot: u.slot, id: u.id, ids: u.ids, skipped: u.skipped }))).toEqual([
      { slot: 0, id: ids[2], ids: ids.slice(0, 3), skipped: 6 },
      { slot: 6, id: ids[4], ids: ids.slice(3), skipped: 3 },
    ]);
    // Slots inside a batch keep the driver's available marking: no used descriptor there.
    expect(ring.flagsAt(1) & 0x8080).toBe(0x80);
    expect(r.sim.queueState(0)).toMatchObject({ usedIdx: 9, usedWrap: true, inFlight: 0 });
    expect(r.sim.stats).toMatchObject({ interrupts: 1, requests: 5 });
    expect(r.sim.violations).toEqual([]);
  });

  test('completions out of order are held; the batch is used once the oldest completes', async () => {
    const held: Held = [];
    const { r, ring } = livePacked(8, 8, held);
    const ids = [0, 1, 2].map(() => ring.add([{ addr: r.buffer(1).iova, len: 1, write: true }]));
    r.sim.process();
    held[2].complete(1);
    held[1].complete(1);
    await turns();
    expect(ring.popAll()).toEqual([]);
    held[0].complete(1);
    await turns();
    expect(ring.popAll().map((u) => [u.slot, u.id, u.skipped])).toEqual([[0, ids[2], 3]]);
  });

  test('DESC event inside a skipped batch fires for that batch', () => {
    const { r, ring } = livePacked(8, 4);
    ring.setDriverEvent(2, 2, true); // RING_EVENT_FLAGS_DESC at slot 2, wrap 1
    for (let n = 0; n < 4; n++) ring.add([{ addr: r.buffer(1).iova, len: 1, write: true }]);
    r.sim.process();
    expect(ring.popAll().map((u) => u.skipped)).toEqual([4]);
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 0 });
  });

  test('1000 buffers through a ring of 6 in batches of up to 4: driver and device skip alike, no violation', () => {
    const { r, ring } = livePacked(6, 4);
    let made = 0;
    let done = 0;
    const sizes = new Set<number>();
    for (let round = 0; done < 1000; round++) {
      if (round > 5000) throw new Error(`stuck after ${done} buffers`);
      // 1 to 5 buffers a round, as room allows, so batches of every size up to 4 occur.
      for (let k = 0; k <= round % 5 && made < 1000 && ring.room >= 2; k++) {
        const n = 1 + (made % 2);
        ring.add(Array.from({ length: n }, (_, i) => ({ addr: r.buffer(1).iova, len: 1, write: i === n - 1 })));
        made++;
      }
      r.sim.process();
      for (const used of ring.popAll()) {
        expect(used.ids.length).toBeLessThanOrEqual(4);
        sizes.add(used.ids.length);
        done += used.ids.length;
      }
    }
    expect([...sizes].sort()).toEqual([1, 2, 3, 4]);
    expect(r.sim.queueState(0)).toMatchObject({ usedIdx: ring.nextUsed, usedWrap: ring.usedWrap, inFlight: 0 });
    expect(r.sim.violations).toEqual([]);
  });
});
