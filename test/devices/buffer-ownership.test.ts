/**
 * Memory handed to a device is the device's until it comes back in the used
 * ring or a reset has completed (the buffer-ownership issue, findings 1 and
 * 2): a request that timed out, was aborted or was rejected by a close whose
 * reset never completed must not have its buffers freed or reused. Each test
 * is the audit's reproduction, with a slow but honest device (gateModel).
 */
import { DmaPool } from '../../lib/platform';
import { quarantinedChunks } from '../../lib/platform/dma-pool';
import { native } from '../../lib/platform/addon';
import { BlkModel, NetModel, type SimDeviceModel, type SimRequest } from '../../lib/sim';
import { VirtioBlk, VirtioConsole, VirtioNet, VirtioRng } from '../../lib/devices';
import { DeviceId } from '../../lib/spec';
import { ConsoleModel } from '../../lib/sim';
import { TransmitBuffers } from '../../lib/devices/transmit-buffers';
import { EchoDriver } from '../support/echo-driver';
import { gateModel } from '../support/gated-model';
import { SIM_VARIANTS, echoModel, simRig, turns, type SimRig } from '../support/sim-rig';

const SECTOR = 512;
/** Long enough that a request the test releases within a few turns does not time out on a loaded machine. */
const TIMEOUT_MS = 200;
/** blk OUT requests (header type 1, §5.2.6): their data is read when the device does the work. */
const isBlkWrite = (request: SimRequest): boolean =>
  new DataView(request.readable[0].buffer, request.readable[0].byteOffset, 4).getUint32(0, true) === 1;

/** A disk whose sector i is filled with byte i + 1. */
function patternDisk(sectors = 64): Uint8Array {
  const disk = new Uint8Array(sectors * SECTOR);
  for (let i = 0; i < sectors; i++) disk.fill(i + 1, i * SECTOR, (i + 1) * SECTOR);
  return disk;
}

/** An entropy device that fills every buffer with `fill` (so whose bytes arrived where is visible). */
function markingRng(): SimDeviceModel & { fill: number } {
  const model = {
    deviceId: DeviceId.ENTROPY,
    features: 0n,
    queueSizes: [8],
    config: new Uint8Array(0),
    fill: 0x11,
    handle(request: SimRequest): number {
      let len = 0;
      for (const b of request.writable) {
        b.fill(model.fill);
        len += b.length;
      }
      return len;
    },
  };
  return model;
}

describe.each(SIM_VARIANTS)('buffer ownership on the %s sim', (_label, variant) => {
  let rig: SimRig | undefined;
  afterEach(() => {
    rig?.close();
    rig = undefined;
  });

  test('finding 1, blk: a timed-out read keeps its bounce buffer from the next (sector 1 gets its own)', async () => {
    const gate = gateModel(new BlkModel({ disk: patternDisk() }));
    rig = simRig(variant, gate.model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    const first = blk.read(0, SECTOR);
    await expect(first).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    const second = blk.read(1, SECTOR, {});
    await turns();
    expect(gate.held).toBe(2);
    // The device does the second read, then — late — the first, before the driver hears of the second.
    gate.release(1);
    gate.release(0);
    const bytes = await second;
    expect([...new Set(bytes)]).toEqual([2]);
    blk.close();
  });

  test('finding 1, blk: a write after a timed-out read puts its own data on its sector', async () => {
    const gate = gateModel(new BlkModel({ disk: patternDisk() }), undefined, isBlkWrite);
    rig = simRig(variant, gate.model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    await expect(blk.read(0, SECTOR)).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    const data = Buffer.alloc(SECTOR, 0xab);
    const write = blk.write(5, data);
    await turns();
    // The late read lands first, then the device reads the write's buffer.
    gate.release(0);
    gate.release(0);
    await write;
    expect([...new Set((gate.model as BlkModel).disk.subarray(5 * SECTOR, 6 * SECTOR))]).toEqual([0xab]);
    blk.close();
  });

  test('finding 1, blk: a timed-out request keeps bounce buffer and header slot till the device returns', async () => {
    const gate = gateModel(new BlkModel({ disk: patternDisk() }));
    rig = simRig(variant, gate.model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    const before = rig.pool.stats();
    await expect(blk.read(0, 4 * SECTOR)).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    // Still allocated: the device has it.
    expect(rig.pool.stats().regions).toBe(before.regions + 1);
    gate.releaseAll();
    await turns();
    expect(rig.pool.stats().regions).toBe(before.regions);
    expect(rig.pool.stats().holds).toBe(0);
    blk.close();
  });

  test('finding 1, rng: a fill that timed out does not give its slot to the next read', async () => {
    const model = markingRng();
    const gate = gateModel(model);
    rig = simRig(variant, gate.model);
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS, requestBytes: 16 });
    await expect(rng.read(16)).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    // The next read is held too; the device then does it, and — late — the first one (0xee).
    const next = rng.read(16);
    await turns();
    expect(gate.held).toBe(2);
    gate.release(1);
    model.fill = 0xee;
    gate.release(0);
    expect([...new Set(await next)]).toEqual([0x11]);
    rng.close();
  });

  test('finding 1, net: a send that timed out keeps its copy; the device sends the bytes it was given', async () => {
    // The device reads a frame when it sends it, not when it takes the chain.
    const gate = gateModel(
      new NetModel(),
      (request, g) => request.queue === 1 && g.holding,
      () => true,
    );
    rig = simRig(variant, gate.model);
    const net = VirtioNet.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    const frameA = Buffer.alloc(60, 0xaa);
    const frameB = Buffer.alloc(60, 0xbb);
    await expect(net.send(frameA)).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    const sendB = net.send(frameB);
    await turns();
    gate.releaseAll();
    await sendB;
    const sent = (gate.model as NetModel).sent;
    expect(sent.map((f) => f[0])).toEqual([0xaa, 0xbb]);
    expect(sent[0].equals(frameA)).toBe(true);
    expect(sent[1].equals(frameB)).toBe(true);
    net.close();
  });

  test('finding 1, console ports, control: a timed-out transmit keeps its copy until the device takes it', async () => {
    const gate = gateModel(echoModel());
    rig = simRig(variant, gate.model);
    const driver = new EchoDriver(rig.transport, { memory: rig.pool });
    const transmit = new TransmitBuffers(rig.pool, TIMEOUT_MS);
    const before = rig.pool.stats().regions;
    await expect(transmit.send(driver.q, Buffer.from('late bytes'))).rejects.toMatchObject({
      code: 'ERR_VIRTIO_TIMEOUT',
    });
    expect(rig.pool.stats().regions).toBe(before + 1);
    expect(transmit.inFlight).toBe(1);
    gate.releaseAll();
    await turns();
    expect(rig.pool.stats().regions).toBe(before);
    expect(transmit.inFlight).toBe(0);
    driver.close();
  });

  test('finding 1, console: a port-0 write timing out closes the device; its copy returns with the reset', async () => {
    const gate = gateModel(new ConsoleModel(), (request, g) => request.queue === 1 && g.holding);
    rig = simRig(variant, gate.model);
    const console = VirtioConsole.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    const stream = console.port(0)!.open();
    stream.on('error', () => undefined);
    const written = await new Promise<Error | null | undefined>((resolve) =>
      stream.write(Buffer.from('late bytes'), resolve),
    );
    expect(written).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    await turns();
    expect(console.closed).toBe(true);
    expect(rig.pool.stats()).toMatchObject({ regions: 0, holds: 0, deferredRegions: 0 });
  });

  test('finding 2, blk: close() on a device whose reset never completes frees no in-flight bounce buffer', async () => {
    const gate = gateModel(new BlkModel({ disk: patternDisk() }));
    rig = simRig(variant, gate.model, {}, { resetTimeoutMs: 20 });
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    rig.sim.resetLatency = Infinity;
    const read = blk.read(0, 8 * SECTOR);
    await turns();
    expect(gate.held).toBe(1);
    blk.close();
    await expect(read).rejects.toMatchObject({ code: 'ERR_VIRTIO_CANCELED' });
    // Whatever is allocated now must not be where the device will write.
    const fresh = rig.pool.allocate(8 * SECTOR, 64);
    const view = new Uint8Array(fresh.view, fresh.offset, fresh.size);
    view.fill(0x5a);
    gate.releaseAll();
    await turns();
    expect([...new Set(view)]).toEqual([0x5a]);
    expect(rig.pool.stats().holds).toBeGreaterThan(0);
  });
});

test('DmaPool: free() of held memory is deferred until unhold(); isHeld() sees overlaps only', () => {
  const pool = DmaPool.anonymous();
  try {
    const region = pool.allocate(256);
    const other = pool.allocate(256);
    pool.hold(region, 64, 32);
    expect(pool.isHeld(region, 0, 64)).toBe(false);
    expect(pool.isHeld(region, 90, 10)).toBe(true);
    expect(pool.isHeld(other, 0, 256)).toBe(false);
    pool.free(region);
    expect(pool.isLive(region)).toBe(false);
    expect(pool.wasFreed(region)).toBe(true);
    expect(pool.stats()).toMatchObject({ deferredRegions: 1, holds: 1 });
    // Not handed out again while held.
    const next = pool.allocate(256);
    expect(next.offset === region.offset && next.view === region.view).toBe(false);
    pool.unhold(region, 64, 32);
    expect(pool.stats()).toMatchObject({ deferredRegions: 0, holds: 0 });
    pool.free(next);
    pool.free(other);
    expect(pool.stats().regions).toBe(0);
  } finally {
    pool.close();
  }
});

test('DmaPool.close() leaves a chunk a device holds bytes in mapped for good; the others are freed', () => {
  const before = quarantinedChunks();
  const pool = new DmaPool((minSize) => native.allocAnonymous(Math.max(minSize, 4096), 0x1000_0000n));
  const heldRegion = pool.allocate(4096); // fills the first chunk
  const freeRegion = pool.allocate(4096); // a second chunk
  expect(heldRegion.view).not.toBe(freeRegion.view);
  pool.hold(heldRegion, 128, 64);
  const heldBytes = new Uint8Array(heldRegion.view, heldRegion.offset, heldRegion.size);
  const freeBytes = new Uint8Array(freeRegion.view, freeRegion.offset, freeRegion.size);
  pool.close();
  expect(quarantinedChunks()).toBe(before + 1);
  expect(heldBytes.length).toBe(4096); // still mapped: the device may still write it
  heldBytes[130] = 0x77;
  expect(heldBytes[130]).toBe(0x77);
  expect(freeBytes.length).toBe(0); // freed and detached
  expect(pool.wasFreed(heldRegion)).toBe(true);
});

test('a reused writable buffer the device holds is refused (BufferHeldError), a readable one is not', async () => {
  const gate = gateModel(new BlkModel({ disk: patternDisk() }));
  const rig = simRig(2, gate.model);
  try {
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: TIMEOUT_MS });
    const buffer = blk.allocBuffer(SECTOR);
    await expect(blk.read(0, buffer)).rejects.toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    gate.holding = false;
    await expect(blk.read(1, buffer)).rejects.toMatchObject({ code: 'ERR_VIRTIO_BUFFER_HELD' });
    await expect(blk.write(1, buffer)).resolves.toBeUndefined();
    // freeBuffer() while held is deferred; the memory comes back with the late completion.
    blk.freeBuffer(buffer);
    expect(rig.pool.stats().deferredRegions).toBe(1);
    gate.releaseAll();
    await turns();
    expect(rig.pool.stats().deferredRegions).toBe(0);
    blk.close();
  } finally {
    rig.close();
  }
});
