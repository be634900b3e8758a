import { ClosedError } from '../../lib/errors';
import type { DmaRegion } from '../../lib/platform';
import { deviceRingMemory, readLiveQueue } from '../../lib/diag';
import type { DescriptorDump, OutstandingDump, PackedShadow, QueueDump, SplitShadow } from '../../lib/diag';
import { FeatureBit, feature } from '../../lib/spec';
import { EchoDriver } from '../support/echo-driver';
import { echoRequest } from '../support/echo-request';
import { SIM_VARIANTS, echoModel, simRig, turns, type SimRig, type SimVariant } from '../support/sim-rig';
import { hex } from '../../lib/util/hex';

let rig: SimRig | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  expect(violations).toEqual([]);
});

/** A driver on an echo sim that holds every request until release() (the model's promise settles then). */
function open(variant: SimVariant, exclude: bigint): { driver: EchoDriver; release(): void } {
  const held: (() => void)[] = [];
  const model = echoModel({ queueSizes: [16] });
  model.handle = (request) => new Promise<number>((resolve) => held.push(() => resolve(echoRequest(request))));
  rig = simRig(variant, model);
  const driver = new EchoDriver(rig.transport, { memory: rig.pool, excludeFeatures: exclude, queueSize: 16 });
  return { driver, release: () => held.splice(0).forEach((go) => go()) };
}

/** One held request: a readable and a writable buffer, and the promise of its completion. */
interface Sent {
  input: DmaRegion;
  output: DmaRegion;
  done: Promise<number>;
}

function send(driver: EchoDriver, signal?: AbortSignal): Sent {
  const input = driver.dma(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
  const output = driver.dma(8);
  const done = driver.q.submit({ readable: [{ region: input }], writable: [{ region: output }] }, { signal });
  return { input, output, done };
}

/** The buffers a chain carries, as [addr, len, WRITE] — through its indirect table when it has one. */
function buffers(chain: OutstandingDump): [string, number, boolean][] {
  const leaves: DescriptorDump[] = chain.descriptors.flatMap((d) => d.indirect ?? [d]);
  return leaves.map((d) => [d.addr, d.len, d.flagNames.includes('WRITE')]);
}

const CASES: [string, bigint][] = [
  ['EVENT_IDX and INDIRECT', 0n],
  ['no EVENT_IDX', feature(FeatureBit.EVENT_IDX)],
  ['no INDIRECT', feature(FeatureBit.INDIRECT_DESC)],
];

describe.each(SIM_VARIANTS)('Virtqueue.dump(): %s', (_label, variant) => {
  describe.each(CASES)('with %s', (_name, exclude) => {
    test('requests the device holds are outstanding with their descriptors; once used, none are', async () => {
      const { driver, release } = open(variant, exclude);
      const format = variant === 'packed' ? 'packed' : 'split';
      const eventIdx = (exclude & feature(FeatureBit.EVENT_IDX)) === 0n;
      const indirect = (exclude & feature(FeatureBit.INDIRECT_DESC)) === 0n;
      const before = driver.dumpQueue(0);
      const sent = [send(driver), send(driver), send(driver)];
      await turns();
      const dump = driver.dumpQueue(0);

      expect(dump).toMatchObject({
        index: 0,
        format,
        size: 16,
        features: { eventIdx, indirect, inOrder: false },
        mode: 'interrupt',
      });
      expect(JSON.parse(JSON.stringify(dump))).toEqual(dump);
      expect(dump.addresses.desc).toBe(hex(driver.q.addresses.desc));
      expect(dump.outstanding).toHaveLength(3);
      expect(dump.outstanding.every((o) => o.orphan === false && o.used === undefined && o.problem === undefined)).toBe(
        true,
      );
      // Each request's buffers, at their device addresses, in chain order: readable then writable.
      const expected = sent.map((s) => [
        [hex(s.input.iova), 8, false],
        [hex(s.output.iova), 8, true],
      ]);
      expect(dump.outstanding.map(buffers)).toEqual(expect.arrayContaining(expected));
      for (const chain of dump.outstanding) {
        const [first] = chain.descriptors;
        if (indirect) {
          expect(chain.descriptors).toHaveLength(1);
          expect(first.flagNames).toContain('INDIRECT');
          expect(first.len).toBe(32);
          expect(first.indirect).toHaveLength(2);
          if (format === 'split') expect(first.indirect![0]).toMatchObject({ flagNames: ['NEXT'], next: 1 });
        } else {
          expect(chain.descriptors).toHaveLength(2);
          expect(first.flagNames).toContain('NEXT');
          if (format === 'split') expect(first.next).toBe(chain.descriptors[1].slot);
        }
        if (format === 'packed')
          expect(chain.descriptors.every((d) => d.state === 'available' && d.id === chain.id)).toBe(true);
      }
      if (dump.ring.format === 'split') {
        const shadow = dump.shadow as SplitShadow;
        expect(dump.ring.availIdx).toBe(shadow.nextAvailIdx);
        expect(shadow.publishedIdx).toBe(shadow.nextAvailIdx);
        expect(dump.ring.usedIdx).toBe(shadow.lastUsedIdx);
        expect(shadow.free).toBe(16 - (indirect ? 3 : 6));
        expect(dump.ring.usedEvent !== undefined).toBe(eventIdx);
      } else {
        const shadow = dump.shadow as PackedShadow;
        expect(shadow).toMatchObject({
          nextAvail: indirect ? 3 : 6,
          availWrap: 1,
          unpublished: 0,
          freeSlots: 16 - (indirect ? 3 : 6),
          freeIds: 13,
        });
        expect(dump.ring.driverEvent.flagName).toBe(eventIdx ? 'DESC' : 'ENABLE');
      }

      release();
      await Promise.all(sent.map((s) => s.done));
      const after = driver.dumpQueue(0);
      expect(after.outstanding).toEqual([]);
      expect(after.stats.completed - before.stats.completed).toBe(3);
      if (after.ring.format === 'split' && before.ring.format === 'split') {
        expect((after.ring.usedIdx - before.ring.usedIdx) & 0xffff).toBe(3);
        expect((after.shadow as SplitShadow).lastUsedIdx).toBe(after.ring.usedIdx);
      } else {
        expect((after.shadow as PackedShadow).nextUsed).toBe(indirect ? 3 : 6);
      }
      for (const s of sent) for (const r of [s.input, s.output]) rig!.pool.free(r);
      driver.close();
    });

    test('readLiveQueue sees in ring memory the same buffers the driver has outstanding', async () => {
      const { driver, release } = open(variant, exclude);
      const sent = [send(driver), send(driver)];
      await turns();
      const dump = driver.dumpQueue(0);
      const { desc, driver: avail, device } = driver.q.addresses;
      const live = readLiveQueue(rig!.sim, 0, deviceRingMemory(rig!.pool), {
        size: dump.size,
        format: dump.format,
        ...(variant === 1 ? {} : { addresses: { desc, driver: avail, device } }),
      });
      expect(live).toMatchObject({
        index: 0,
        live: true,
        size: 16,
        sizeFrom: 'option',
        addresses: dump.addresses,
        queueSelLeftAt: 0,
      });
      if (!('ring' in live.memory)) throw new Error(`no ring memory: ${JSON.stringify(live.memory)}`);
      expect(live.memory.problems).toEqual([]);
      expect(live.memory.ring).toEqual(
        dump.format === 'split'
          ? { ...dump.ring, usedEvent: expect.any(Number), availEvent: expect.any(Number) }
          : dump.ring,
      );
      const strip = (chains: OutstandingDump[]): unknown =>
        chains.map((c) => ({ id: c.id, descriptors: c.descriptors })).sort((a, b) => a.id - b.id);
      expect(strip(live.memory.outstanding)).toEqual(strip(dump.outstanding));
      release();
      await Promise.all(sent.map((s) => s.done));
      driver.close();
    });
  });

  test('a request whose caller gave up is marked orphan until the device returns it', async () => {
    const { driver, release } = open(variant, 0n);
    const controller = new AbortController();
    const kept = send(driver);
    const abandoned = send(driver, controller.signal);
    abandoned.done.catch(() => undefined);
    await turns();
    controller.abort();
    await expect(abandoned.done).rejects.toMatchObject({ code: 'ABORT_ERR' });
    const dump = driver.dumpQueue(0);
    const orphanOf = (s: Sent): boolean | undefined =>
      dump.outstanding.find((o) => buffers(o)[0][0] === hex(s.input.iova))?.orphan;
    expect(orphanOf(abandoned)).toBe(true);
    expect(orphanOf(kept)).toBe(false);
    release();
    await kept.done;
    await turns();
    expect(driver.dumpQueue(0).outstanding).toEqual([]);
    driver.close();
  });

  test('a used element the driver has not consumed yet shows as used', async () => {
    const { driver, release } = open(variant, 0n);
    driver.q.disableInterrupts();
    const sent = send(driver);
    await turns();
    release();
    await turns();
    const dump: QueueDump = driver.dumpQueue(0);
    expect(dump.outstanding).toHaveLength(1);
    expect(dump.outstanding[0].used).toEqual({ len: 8 });
    if (dump.ring.format === 'split')
      expect(dump.ring.usedIdx).toBe(((dump.shadow as SplitShadow).lastUsedIdx + 1) & 0xffff);
    expect(driver.q.poll()).toBe(1);
    await sent.done;
    driver.close();
  });

  test('dumpQueue: RangeError for a queue the driver did not set up, ClosedError after close', () => {
    const { driver } = open(variant, 0n);
    expect(() => driver.dumpQueue(1)).toThrow(RangeError);
    driver.close();
    expect(() => driver.dumpQueue(0)).toThrow(ClosedError);
  });
});
