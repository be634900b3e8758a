/**
 * Runs in the lab guest: bench/floor/blk-floor.c's QD1 loop written in
 * JavaScript on our platform layer alone (MmioWindow, DmaPool,
 * UioInterruptSource, the addon's barriers) — no transport, queue or
 * driver code of ours. It tells apart what Node and V8 cost under TCG,
 * which any JavaScript driver pays, from what our library adds on top:
 * "JS / C" is the language's and the runtime's share, "ours / JS" the
 * library's.
 *
 *   node scripts/lab/guest/js-floor.js <seconds> <mode>[,<mode>…]   (modes: poll, interrupt, interrupt-sync)
 *
 * poll: a synchronous spin on used.idx with interrupts suppressed, never
 * yielding to the event loop (as the C loop never sleeps). interrupt: the
 * UIO fd watched in libuv's epoll set through UioInterruptSource (the way
 * our interrupt mode waits), the line acknowledged and unmasked from the
 * listener, the next request submitted from it. interrupt-sync: a blocking
 * read() of a second /dev/uioN descriptor and the unmasking write(), both
 * synchronous fs calls, as the C floor waits: no event loop turn.
 *
 * Same device and request pattern as the C floor: the first virtio-blk
 * transport on UIO, Version 2 only, VIRTIO_F_VERSION_1 and no other
 * feature, one split queue of min(QueueNumMax, 128), a fixed
 * three-descriptor chain for 4 KiB random reads (§5.2.6), status and used
 * length checked, a reset at the end (§2.4). The modes run one after the
 * other in one process (a Node start costs seconds under TCG), each after
 * a 1 s warm-up; one result line each:
 *   @@LAB-RESULT {"kind":"js-floor","mode":...,"iodepth":1,"iops":...,"meanUs":...,"requests":...}
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { DmaPool, MmioWindow, UioInterruptSource, nativeBarriers, type RegisterBlock } from '../../../lib/platform';
import {
  BlkConfig,
  BlkRequestType,
  BlkStatus,
  DeviceId,
  DeviceStatus,
  MmioRegister as R,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  VirtqDesc,
} from '../../../lib/spec';
import type { UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

// One DMA region, laid out as the C floor lays out its hugepage.
const AT_DESC = 0x0000;
const AT_AVAIL = 0x1000;
const AT_USED = 0x2000;
const AT_HEADER = 0x3000;
const AT_STATUS = 0x3800;
const AT_DATA = 0x4000;
const READ_BYTES = 4096;
const REGION_BYTES = AT_DATA + READ_BYTES;
const QUEUE_SIZE_CAP = 128;

const MODES = ['poll', 'interrupt', 'interrupt-sync'] as const;
type Mode = (typeof MODES)[number];

/** The queue, the request slot and the loop's counters: everything one request touches. */
interface Floor {
  regs: RegisterBlock;
  size: number;
  avail: Uint16Array;
  used: Uint16Array;
  usedElems: Uint32Array;
  header: DataView;
  status: Uint8Array;
  blocks: number;
  availIdx: number;
  usedIdx: number;
  requests: number;
}

/** §2.4: write 0, then wait until the device reads back 0. */
function reset(regs: RegisterBlock): void {
  regs.writel(R.Status, 0);
  if (regs.pollUntil(R.Status, 0xff, 0, 1000) === null) throw new Error('the device did not reset');
}

/** A 64-bit config field, read again while ConfigGeneration moves (§2.5.1). */
function configRead64(regs: RegisterBlock, offset: number): bigint {
  for (;;) {
    const before = regs.readl(R.ConfigGeneration);
    const low = regs.readl(R.Config + offset);
    const high = regs.readl(R.Config + offset + 4);
    if (regs.readl(R.ConfigGeneration) === before) return (BigInt(high) << 32n) | BigInt(low);
  }
}

/** The init sequence (§3.1.1, §4.2.3.1, §4.2.3.2): VERSION_1 only, queue 0 split, the chain's descriptors fixed. */
function setUp(regs: RegisterBlock, memory: DmaPool, suppressInterrupts: boolean): Floor {
  reset(regs);
  regs.writel(R.Status, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
  regs.writel(R.DeviceFeaturesSel, 1);
  if ((regs.readl(R.DeviceFeatures) & 1) === 0) throw new Error('the device does not offer VIRTIO_F_VERSION_1');
  regs.writel(R.DriverFeaturesSel, 0);
  regs.writel(R.DriverFeatures, 0);
  regs.writel(R.DriverFeaturesSel, 1);
  regs.writel(R.DriverFeatures, 1);
  regs.writel(R.Status, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
  if ((regs.readl(R.Status) & DeviceStatus.FEATURES_OK) === 0) throw new Error('the device refused FEATURES_OK');
  const capacity = configRead64(regs, BlkConfig.capacity); // in 512-byte sectors (§5.2.4)
  regs.writel(R.QueueSel, 0);
  const max = regs.readl(R.QueueNumMax);
  if (max === 0) throw new Error('queue 0 is not available');
  const size = Math.min(max, QUEUE_SIZE_CAP);
  const region = memory.allocate(REGION_BYTES, 4096);
  new Uint8Array(region.view, region.offset, REGION_BYTES).fill(0);
  const at = (offset: number): bigint => region.iova + BigInt(offset);
  regs.writel(R.QueueNum, size);
  for (const [low, offset] of [
    [R.QueueDescLow, AT_DESC],
    [R.QueueDriverLow, AT_AVAIL],
    [R.QueueDeviceLow, AT_USED],
  ]) {
    regs.writel(low, Number(at(offset) & 0xffff_ffffn));
    regs.writel(low + 4, Number(at(offset) >> 32n));
  }
  regs.writel(R.QueueReady, 1);
  // The fixed chain (§2.7.5): header (device-readable), data and status (device-writable).
  const desc = new DataView(region.view, region.offset + AT_DESC, 3 * 16);
  const chain: [number, number, number][] = [
    [AT_HEADER, 16, VirtqDesc.F_NEXT],
    [AT_DATA, READ_BYTES, VirtqDesc.F_NEXT | VirtqDesc.F_WRITE],
    [AT_STATUS, 1, VirtqDesc.F_WRITE],
  ];
  chain.forEach(([offset, length, flags], i) => {
    desc.setBigUint64(i * 16, at(offset), true);
    desc.setUint32(i * 16 + 8, length, true);
    desc.setUint16(i * 16 + 12, flags, true);
    desc.setUint16(i * 16 + 14, i + 1, true);
  });
  const avail = new Uint16Array(region.view, region.offset + AT_AVAIL, 2 + size);
  avail[0] = suppressInterrupts ? VRING_AVAIL_F_NO_INTERRUPT : 0;
  regs.writel(
    R.Status,
    DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK,
  );
  return {
    regs,
    size,
    avail,
    used: new Uint16Array(region.view, region.offset + AT_USED, 2),
    usedElems: new Uint32Array(region.view, region.offset + AT_USED + 4, 2 * size),
    header: new DataView(region.view, region.offset + AT_HEADER, 16),
    status: new Uint8Array(region.view, region.offset + AT_STATUS, 1),
    blocks: Number(capacity / 8n),
    availIdx: 0,
    usedIdx: 0,
    requests: 0,
  };
}

/** Writes a random 4 KiB read into the slot and publishes it (§2.7.13); notifies unless the device said not to. */
function submit(f: Floor): void {
  const sector = Math.floor(Math.random() * f.blocks) * 8;
  f.header.setUint32(0, BlkRequestType.IN, true);
  f.header.setUint32(8, sector % 0x1_0000_0000, true);
  f.header.setUint32(12, Math.floor(sector / 0x1_0000_0000), true);
  f.status[0] = 0xff;
  f.avail[2 + (f.availIdx % f.size)] = 0;
  f.availIdx = (f.availIdx + 1) & 0xffff;
  // The index after the ring entry (a sequentially consistent store), then a full barrier before used.flags
  // (§2.7.13.4); writel orders the notify after both.
  Atomics.store(f.avail, 1, f.availIdx);
  nativeBarriers.mb();
  if ((Atomics.load(f.used, 0) & VRING_USED_F_NO_NOTIFY) === 0) f.regs.writel(R.QueueNotify, 0);
}

/** Consumes the completion if used.idx moved (§2.7.14); checks its id, length and status. False when nothing came. */
function reap(f: Floor): boolean {
  const idx = Atomics.load(f.used, 1);
  if (idx === f.usedIdx) return false;
  if (((idx - f.usedIdx) & 0xffff) !== 1) throw new Error(`used.idx moved by ${(idx - f.usedIdx) & 0xffff}, not 1`);
  const slot = (f.usedIdx % f.size) * 2;
  const id = f.usedElems[slot];
  const len = f.usedElems[slot + 1];
  f.usedIdx = idx;
  if (id !== 0 || len !== READ_BYTES + 1 || f.status[0] !== BlkStatus.OK)
    throw new Error(`bad completion: id ${id}, len ${len}, status ${f.status[0]}`);
  f.requests++;
  return true;
}

function runPoll(f: Floor, until: number): void {
  while (performance.now() < until) {
    submit(f);
    while (!reap(f));
  }
}

/** The acknowledgement a UIO driver owes the device before the line is unmasked (§4.2.2). */
function acknowledge(regs: RegisterBlock): void {
  const pending = regs.readl(R.InterruptStatus);
  if (pending !== 0) regs.writel(R.InterruptACK, pending);
}

function runInterrupt(f: Floor, line: UioInterruptSource, until: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (error?: unknown): void => {
      line.unlisten();
      if (error === undefined) resolve();
      else reject(error instanceof Error ? error : new Error(String(error)));
    };
    line.listen(
      () => {
        try {
          acknowledge(f.regs);
          line.acknowledged?.();
          if (!reap(f)) return; // an interrupt with nothing used: wait for the next
          if (performance.now() < until) submit(f);
          else stop();
        } catch (error) {
          stop(error);
        }
      },
      (error) => stop(error),
    );
    submit(f);
  });
}

function runInterruptSync(f: Floor, path: string, until: number): void {
  const fd = openSync(path, 'r+');
  const count = Buffer.alloc(4);
  const unmask = Buffer.from([1, 0, 0, 0]);
  try {
    writeSync(fd, unmask); // a previous user may have left the line masked
    while (performance.now() < until) {
      submit(f);
      do {
        if (readSync(fd, count, 0, 4, null) !== 4) throw new Error(`${path}: short read`);
        acknowledge(f.regs);
        writeSync(fd, unmask);
      } while (!reap(f));
    }
  } finally {
    closeSync(fd);
  }
}

/** One mode's warm-up and measured run on a freshly set-up device; its result line. */
async function measure(
  device: UioDeviceSpec['device'],
  regs: RegisterBlock,
  mode: Mode,
  seconds: number,
): Promise<void> {
  const memory = DmaPool.hugetlb();
  const line = mode === 'interrupt' ? UioInterruptSource.open(device) : undefined;
  try {
    const f = setUp(regs, memory, mode === 'poll');
    for (const [length, measured] of [
      [Math.min(1, seconds / 2), false],
      [seconds, true],
    ] as const) {
      f.requests = 0;
      const started = performance.now();
      const until = started + length * 1000;
      if (mode === 'poll') runPoll(f, until);
      else if (mode === 'interrupt') await runInterrupt(f, line!, until);
      else runInterruptSync(f, device.devicePath, until);
      const elapsedUs = (performance.now() - started) * 1000;
      if (measured)
        report({
          kind: 'js-floor',
          mode,
          iodepth: 1,
          iops: Math.round((f.requests * 1e6) / elapsedUs),
          meanUs: elapsedUs / f.requests,
          requests: f.requests,
        });
    }
  } finally {
    // The device lets go of the ring before its memory does (§2.4).
    reset(regs);
    line?.close();
    memory.close();
  }
}

async function main(): Promise<void> {
  const [secondsArg, modesArg = 'poll'] = process.argv.slice(2);
  const seconds = Number(secondsArg);
  const modes = modesArg.split(',') as Mode[];
  if (!(seconds > 0) || !modes.every((m) => MODES.includes(m)))
    throw new RangeError(`usage: node js-floor.js <seconds> <mode>[,<mode>…] (modes: ${MODES.join(', ')})`);
  const found = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK);
  if (!found) throw new Error('no virtio-blk transport on UIO');
  const { device } = found.spec as UioDeviceSpec;
  const regs = MmioWindow.openUio(device);
  try {
    const version = regs.readl(R.Version);
    for (const mode of modes) {
      if (version !== 2) report({ kind: 'js-floor', mode, iodepth: 1, skipped: 'floor: Version 2 only', version });
      else await measure(device, regs, mode, seconds);
    }
  } finally {
    regs.close();
  }
}

runMain(main);
