/**
 * A virtio-blk device whose blk_size (§5.2.4; QEMU's logical_block_size)
 * is above 512: requests that do not start and end on a block are refused
 * up front — RangeError ERR_INVALID_ARG_VALUE, nothing sent (no
 * notification, the model saw no request) — instead of going to the device
 * to come back as an I/O error. Aligned requests go through.
 */
import { VirtioBlk } from '../../lib/devices';
import { BlkModel } from '../../lib/sim';
import { SIM_VARIANTS, simRig, type SimRig } from '../support/sim-rig';

const BLOCK = 4096;

describe.each(SIM_VARIANTS)('blk_size 4096 (%s)', (_, variant) => {
  let rig: SimRig;
  let model: BlkModel;
  let blk: VirtioBlk;
  beforeEach(() => {
    model = new BlkModel({
      disk: new Uint8Array(16 * BLOCK),
      blkSize: BLOCK,
      discard: { maxSectors: 64, maxSegments: 1 },
    });
    rig = simRig(variant, model);
    blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
  });
  afterEach(() => {
    blk.close();
    expect(rig.close()).toEqual([]);
  });

  const sent = (): { requests: number; notifications: number } => ({
    requests: model.stats.requests,
    notifications: rig.sim.stats.notifications.reduce((a, b) => a + b, 0),
  });

  test('the driver reads the block size', () => {
    expect(blk.info.blockSize).toBe(BLOCK);
  });

  test.each([
    ['read at a sector inside a block', (d: VirtioBlk) => d.read(1, BLOCK)],
    ['read of part of a block', (d: VirtioBlk) => d.read(0, 512)],
    ['write at a sector inside a block', (d: VirtioBlk) => d.write(9, Buffer.alloc(BLOCK))],
    ['write of a block and a half', (d: VirtioBlk) => d.write(8, Buffer.alloc(BLOCK + 2048))],
    [
      'readInto part of a block',
      (d: VirtioBlk) =>
        new Promise((resolve, reject) =>
          d.readInto(0, Buffer.alloc(1024), (error) => (error ? reject(error) : resolve(undefined))),
        ),
    ],
    ['discard of one sector', (d: VirtioBlk) => d.discard([{ sector: 0, sectors: 1 }])],
  ])('%s is refused before anything is sent', async (_name, request) => {
    const before = sent();
    const error = await request(blk).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringMatching(/4096-byte blocks/) });
    expect(sent()).toEqual(before);
  });

  test('whole blocks go through', async () => {
    const data = Buffer.alloc(2 * BLOCK, 0x5a);
    await blk.write(8, data);
    expect(Buffer.from(await blk.read(8, 2 * BLOCK)).equals(data)).toBe(true);
    await blk.discard([{ sector: 16, sectors: 8 }]);
    expect(model.stats.requests).toBeGreaterThanOrEqual(3);
  });
});
