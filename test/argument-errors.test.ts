/**
 * Bad arguments keep their classes (TypeError, RangeError) and carry Node's
 * codes, as Node's own APIs do (lib/errors.ts: invalidArgType, outOfRange,
 * invalidArgValue); checked at representative sites of each layer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { VirtioBlk } from '../lib/devices';
import { DmaPool, MmioWindow } from '../lib/platform';
import { checkQueueIndex } from '../lib/transport/queue-ownership';
import { BlkModel, SimDevice } from '../lib/sim';
import { MmioTransport } from '../lib/transport';

function caught(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('did not throw');
}

describe('argument errors carry Node codes and keep their classes', () => {
  const memory = DmaPool.anonymous();
  const sim = new SimDevice({ memory, model: new BlkModel({ disk: new Uint8Array(8 * 512) }) });
  const blk = VirtioBlk.open(new MmioTransport(sim, { interrupts: sim.interrupt }), { memory });
  afterAll(() => {
    blk.close();
    sim.close();
    memory.close();
  });

  test('a read past the disk end: RangeError ERR_OUT_OF_RANGE', async () => {
    const error = await blk.read(7, 1024).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({
      code: 'ERR_OUT_OF_RANGE',
      message: expect.stringMatching(/beyond the device's capacity/),
    });
  });

  test('a write of something not a buffer: TypeError ERR_INVALID_ARG_TYPE', async () => {
    const error = await blk.write(0, 'text' as unknown as Uint8Array).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  test('a length that is not whole sectors: RangeError ERR_INVALID_ARG_VALUE', async () => {
    const error = await blk.read(0, 100).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });

  test('a bad queue index: RangeError ERR_OUT_OF_RANGE', () => {
    const error = caught(() => checkQueueIndex(70000));
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });

  test('misaligned access: RangeError ERR_INVALID_ARG_VALUE; bad offset type: TypeError ERR_INVALID_ARG_TYPE', () => {
    const misaligned = caught(() => sim.readl(2));
    expect(misaligned).toBeInstanceOf(RangeError);
    expect(misaligned).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    const past = caught(() => sim.readl(sim.size));
    expect(past).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    const notNumber = caught(() => sim.readl('0' as unknown as number));
    expect(notNumber).toBeInstanceOf(TypeError);
    expect(notNumber).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  test('a DMA size out of range and a region from elsewhere', () => {
    expect(caught(() => memory.allocate(0))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    const other = DmaPool.anonymous();
    const region = other.allocate(64);
    expect(caught(() => memory.free(region))).toMatchObject({ name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    other.close();
  });

  test('an unknown name: the sim hostile behaviour table', () => {
    const error = caught(
      () =>
        new SimDevice({
          memory,
          model: new BlkModel(),
          hostile: { seed: 1, behaviours: { 'no-such-lie': true } as never },
        }),
    );
    expect(error).toBeInstanceOf(RangeError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });
});

test("the addon's own argument errors carry the codes too (a window over a file)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'argument-errors-'));
  try {
    const file = join(dir, 'regs');
    writeFileSync(file, Buffer.alloc(4096));
    const window = MmioWindow.openFile(file, 0, 0x100);
    try {
      const past = caught(() => window.readl(0x100));
      expect(past).toBeInstanceOf(RangeError);
      expect(past).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
      const misaligned = caught(() => window.readl(2));
      expect(misaligned).toBeInstanceOf(RangeError);
      expect(misaligned).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
      const notNumber = caught(() => window.readl('0' as unknown as number));
      expect(notNumber).toBeInstanceOf(TypeError);
      expect(notNumber).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    } finally {
      window.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
