/**
 * Issue 7: bad user inputs over the whole public API, as one table per layer.
 * Every row: a typed error (TypeError / RangeError, or the library's own
 * class with its exact `code`), nothing sent to the device, nothing lost
 * (no DMA leaked; a good call right after still works). How a row is judged:
 * test/support/bad-input-table.ts. Rows state the behaviour the library must
 * have (README "Errors": use after close() is ClosedError; a request pending
 * at close is CanceledError); a failing row is a library bug to fix, not a
 * row to bend. A few rows record behaviours agreed as acceptable: a wrongly
 * typed number may be a RangeError (ARGUMENT_ERROR), an empty blk transfer
 * is a no-op, blk discard/write-zeroes without the feature is the device's
 * UNSUPP answer (DeviceIoError).
 */
import {
  AbortError,
  CanceledError,
  ClosedError,
  DeviceIoError,
  PortError,
  QueueFullError,
  ReadOnlyError,
  TransportError,
  VirtioError,
} from '../../lib/errors';
import { VirtioBlk, VirtioConsole, VirtioNet, VirtioRng, type VirtioBlkOptions } from '../../lib/devices';
import { native } from '../../lib/platform/addon';
import {
  DmaPool,
  EventfdInterruptSource,
  MmioWindow,
  PollingInterruptSource,
  type DmaRegion,
  type InterruptEvent,
  type InterruptSource,
} from '../../lib/platform';
import type { QueueRequest } from '../../lib/queue';
import {
  BlkModel,
  ConsoleModel,
  NetModel,
  RngModel,
  SimDevice,
  type BlkModelOptions,
  type SimDeviceModel,
  type SimRequest,
} from '../../lib/sim';
import { FeatureBit, MMIO_MAGIC_VALUE, NET_MAX_FRAME, features } from '../../lib/spec';
import { MmioTransport, TRANSPORT_FEATURES, type QueueEndpoint } from '../../lib/transport';
import {
  ARGUMENT_ERROR,
  fileWindow,
  memoryUse,
  poolSubject,
  rejects,
  removeScratch,
  resolvesQuietly,
  rigSubject,
  runCloseRace,
  runRow,
  settleOnce,
  simSnapshot,
  throws,
  type CloseMoment,
  type CloseRow,
  type Expected,
  type RaceSubject,
  type Row,
  type Subject,
  type WindowSubject,
} from '../support/bad-input-table';
import { EchoDriver } from '../support/echo-driver';
import { echoRequest } from '../support/echo-request';
import { SIM_VARIANTS, echoModel, type SimRig, type SimVariant } from '../support/sim-rig';

afterAll(removeScratch);

const CLOSED = 'ERR_VIRTIO_CLOSED';
const CANCELED = 'ERR_VIRTIO_CANCELED';
const ABORTED = 'ABORT_ERR';
const abortedSignal = (): AbortSignal => AbortSignal.abort(new Error('given up'));
/** Casts a deliberately wrong argument past the type checker. */
const bad = <T>(value: unknown): T => value as T;
const sector = (seed: number): Buffer => Buffer.alloc(512, seed);

/** Runs a layer's rows, one jest test each. */
function table<S extends Subject>(rows: readonly Row<S>[]): void {
  it.each(rows.map((row) => [...row] as [string, Row<S>[1], Row<S>[2], Expected]))(
    '%s',
    (_description, setup, call, want) => runRow(setup, call, want),
  );
}

/**
 * A driver opened on a fresh transport over the same sim, a good request on it, then closed: the device is still
 * usable.
 */
async function reopenAndUse<D extends { close(): void }>(
  rig: SimRig,
  open: (transport: MmioTransport) => D,
  use: (driver: D) => Promise<void>,
): Promise<void> {
  const driver = open(new MmioTransport(rig.sim, { interrupts: rig.sim.interrupt }));
  try {
    await use(driver);
  } finally {
    driver.close();
  }
}

// ---------------------------------------------------------------------------
// Platform: register windows

const windowCalls: readonly (readonly [
  string,
  (w: import('../../lib/platform').RegisterBlock) => unknown,
  Expected,
])[] = [
  ['readl at the window size', (w) => w.readl(w.size), throws(RangeError)],
  ['readl straddling the end', (w) => w.readl(w.size - 2), throws(RangeError)],
  ['readw at the window size', (w) => w.readw(w.size), throws(RangeError)],
  ['readb at the window size', (w) => w.readb(w.size), throws(RangeError)],
  ['readl at an unaligned offset', (w) => w.readl(2), throws(RangeError)],
  ['readw at an odd offset', (w) => w.readw(1), throws(RangeError)],
  ['writel at an unaligned offset', (w) => w.writel(6, 0), throws(RangeError)],
  ['writew at an odd offset', (w) => w.writew(0x73, 0), throws(RangeError)],
  ['readl at a negative offset', (w) => w.readl(-4), throws(RangeError)],
  ['readl at a fractional offset', (w) => w.readl(1.5), throws(RangeError)],
  ['readb at NaN', (w) => w.readb(NaN), throws(RangeError)],
  ['readl at Infinity', (w) => w.readl(Infinity), throws(RangeError)],
  ['readl at 2^60', (w) => w.readl(2 ** 60), throws(RangeError)],
  ['readl at a string offset', (w) => w.readl(bad('4')), throws(TypeError)],
  ['readl at a bigint offset', (w) => w.readl(bad(4n)), throws(TypeError)],
  ['readl without an offset', (w) => bad<() => number>(w.readl)(), throws(TypeError)],
  ['writel of 2^32', (w) => w.writel(0x70, 2 ** 32), throws(RangeError)],
  ['writeb of 256', (w) => w.writeb(0x70, 256), throws(RangeError)],
  ['writew of 0x10000', (w) => w.writew(0x70, 0x10000), throws(RangeError)],
  ['writew of -32769', (w) => w.writew(0x70, -32769), throws(RangeError)],
  ['writel of 0.5', (w) => w.writel(0x70, 0.5), throws(RangeError)],
  ['writel of NaN', (w) => w.writel(0x70, NaN), throws(RangeError)],
  ['writel of -Infinity', (w) => w.writel(0x70, -Infinity), throws(RangeError)],
  ['writel of a string', (w) => w.writel(0x70, bad('1')), throws(TypeError)],
  ['writel of a bigint', (w) => w.writel(0x70, bad(1n)), throws(TypeError)],
  ['writel without a value', (w) => bad<(o: number) => void>(w.writel)(0x70), throws(TypeError)],
  ['copyOut at width 3', (w) => w.copyOut(0, new Uint8Array(6), bad(3)), throws(RangeError)],
  ['copyOut past the end', (w) => w.copyOut(w.size - 8, new Uint8Array(16)), throws(RangeError)],
  ['copyOut of 6 bytes at width 4', (w) => w.copyOut(0, new Uint8Array(6), 4), throws(RangeError)],
  ['copyIn at an unaligned offset', (w) => w.copyIn(0x72, new Uint8Array(4), 4), throws(RangeError)],
  ['copyIn from a plain array', (w) => w.copyIn(0x70, bad([1, 2, 3, 4])), throws(TypeError)],
  ['copyOut into a Uint16Array', (w) => w.copyOut(0, bad(new Uint16Array(2))), throws(TypeError)],
  ['pollUntil at the window size', (w) => w.pollUntil(w.size, 1, 1, 1), throws(RangeError)],
  ['pollUntil for 10^9 ms', (w) => w.pollUntil(0, 1, 1, 1e9), throws(RangeError)],
  ['pollUntil for -1 ms', (w) => w.pollUntil(0, 1, 1, -1), throws(RangeError)],
  ['pollUntil for NaN ms', (w) => w.pollUntil(0, 1, 1, NaN), throws(RangeError)],
];

const closedWindowCalls: readonly (readonly [string, (w: import('../../lib/platform').RegisterBlock) => unknown])[] = [
  ['readb', (w) => w.readb(0)],
  ['readw', (w) => w.readw(0)],
  ['readl', (w) => w.readl(0)],
  ['writeb', (w) => w.writeb(0x70, 1)],
  ['writew', (w) => w.writew(0x70, 1)],
  ['writel', (w) => w.writel(0x70, 1)],
  ['copyOut', (w) => w.copyOut(0, new Uint8Array(4))],
  ['copyIn', (w) => w.copyIn(0x70, new Uint8Array(4))],
  ['pollUntil', (w) => w.pollUntil(0, 0, 0, 1)],
];

interface SimWindowSubject extends Subject {
  window: SimDevice;
}

/** The sim as a bare RegisterBlock (no transport): its registers and counters are the device. */
function simWindow(options: { closed?: boolean } = {}): SimWindowSubject {
  const pool = DmaPool.anonymous();
  const sim = new SimDevice({ memory: pool, model: new RngModel(), strict: true });
  if (options.closed) sim.close();
  return {
    window: sim,
    snapshot: () => (sim.closed ? 'closed' : simSnapshot(sim)),
    good: () => {
      const device = sim.closed ? new SimDevice({ memory: pool, model: new RngModel() }) : sim;
      expect(device.readl(0)).toBe(MMIO_MAGIC_VALUE);
      if (device !== sim) device.close();
    },
    dispose: () => {
      const violations = [...sim.violations];
      sim.close();
      pool.close();
      return violations;
    },
  };
}

describe.each<[string, (options?: { closed?: boolean }) => WindowSubject | SimWindowSubject]>([
  ['register window over a file', fileWindow],
  ['register window of the sim', simWindow],
])('%s', (_name, open) => {
  type W = WindowSubject | SimWindowSubject;
  table<W>(
    windowCalls.map(([description, call, want]): Row<W> => [description, () => open(), (s) => call(s.window), want]),
  );
  table<W>(
    closedWindowCalls.map(([name, call]): Row<W> => [
      `${name} after close()`,
      () => open({ closed: true }),
      (s) => call(s.window),
      throws(ClosedError, CLOSED),
    ]),
  );
});

describe('opening register windows', () => {
  const page = native.pageSize;
  table<WindowSubject>([
    ['openFile at a negative offset', fileWindow, (s) => MmioWindow.openFile(s.path, -1, 4), throws(RangeError)],
    ['openFile at a fractional offset', fileWindow, (s) => MmioWindow.openFile(s.path, 1.5, 4), throws(RangeError)],
    ['openFile with a string offset', fileWindow, (s) => MmioWindow.openFile(s.path, bad('0'), 4), throws(TypeError)],
    ['openFile of size 0', fileWindow, (s) => MmioWindow.openFile(s.path, 0, 0), throws(RangeError)],
    ['openFile of a negative size', fileWindow, (s) => MmioWindow.openFile(s.path, 0, -4), throws(RangeError)],
    ['openFile of NaN bytes', fileWindow, (s) => MmioWindow.openFile(s.path, 0, NaN), throws(RangeError)],
    [
      'openFile past the end of the file',
      fileWindow,
      (s) => MmioWindow.openFile(s.path, 2 * page - 0x100, 0x200),
      throws(RangeError),
    ],
    ['openFile of a number as path', fileWindow, () => MmioWindow.openFile(bad(123), 0, 4), throws(TypeError)],
    ['openPhysical at a number base', fileWindow, () => MmioWindow.openPhysical(bad(0x1000), 0x200), throws(TypeError)],
    [
      'openUio of a map the device lacks',
      fileWindow,
      () => MmioWindow.openUio({ devicePath: '/dev/uio99', maps: [] } as never, 3),
      throws(RangeError),
    ],
  ]);
});

// ---------------------------------------------------------------------------
// Platform: DMA pools

describe('DMA pool', () => {
  const open = (): ReturnType<typeof poolSubject> => poolSubject();
  const closed = (): ReturnType<typeof poolSubject> => poolSubject({ closed: true });
  table<ReturnType<typeof poolSubject>>([
    ['allocate 0 bytes', open, (s) => s.pool.allocate(0), throws(RangeError)],
    ['allocate -1 bytes', open, (s) => s.pool.allocate(-1), throws(RangeError)],
    ['allocate NaN bytes', open, (s) => s.pool.allocate(NaN), throws(RangeError)],
    ['allocate 1.5 bytes', open, (s) => s.pool.allocate(1.5), throws(RangeError)],
    ['allocate Infinity bytes', open, (s) => s.pool.allocate(Infinity), throws(RangeError)],
    ['allocate 2^34 + 1 bytes', open, (s) => s.pool.allocate(2 ** 34 + 1), throws(RangeError)],
    ['allocate a string size', open, (s) => s.pool.allocate(bad('64')), throws(RangeError)],
    ['allocate aligned to 3', open, (s) => s.pool.allocate(64, 3), throws(RangeError)],
    ['allocate aligned to 0', open, (s) => s.pool.allocate(64, 0), throws(RangeError)],
    ['allocate aligned to -16', open, (s) => s.pool.allocate(64, -16), throws(RangeError)],
    ['allocate aligned to NaN', open, (s) => s.pool.allocate(64, NaN), throws(RangeError)],
    ['allocate aligned to 4 MiB', open, (s) => s.pool.allocate(64, 1 << 22), throws(RangeError)],
    [
      'free a region twice',
      () => {
        const s = open();
        s.pool.free(s.region);
        return s;
      },
      (s) => s.pool.free(s.region),
      throws(RangeError),
    ],
    [
      'free a region of another pool',
      open,
      (s) => {
        const other = DmaPool.anonymous();
        try {
          s.pool.free(other.allocate(64));
        } finally {
          other.close();
        }
      },
      throws(RangeError),
    ],
    ['free a copy of a live region', open, (s) => s.pool.free({ ...s.region }), throws(RangeError)],
    ['free null', open, (s) => s.pool.free(bad(null)), throws(RangeError)],
    [
      'anonymous pool at a negative device address',
      open,
      () => DmaPool.anonymous(-1n).allocate(64),
      throws(RangeError),
    ],
    ['allocate after close()', closed, (s) => s.pool.allocate(64), throws(ClosedError, CLOSED)],
    ['free after close()', closed, (s) => s.pool.free(s.region), throws(ClosedError, CLOSED)],
  ]);
});

// ---------------------------------------------------------------------------
// Platform: interrupt sources

interface SourceSubject extends Subject {
  source: InterruptSource & { raise?(count?: number): void };
}

/** A source with a listener that records events (`listening: false`: none yet; `closed`: closed). */
function sourceSubject(
  make: () => InterruptSource & { raise?(count?: number): void },
  options: { listening?: boolean; closed?: boolean } = {},
): SourceSubject {
  const source = make();
  const events: InterruptEvent[] = [];
  if (options.listening ?? true)
    source.listen(
      (e) => events.push(e),
      () => undefined,
    );
  if (options.closed) source.close();
  return {
    source,
    // A polling source ticks on its own (every ms here), so only a source that is raised counts its events.
    snapshot: () => ({
      closed: source.closed,
      listening: source.listening,
      events: source.raise ? events.length : 'ticks',
    }),
    good: async () => {
      // The first listener (or, on a closed or idle source, a new one) still hears interrupts.
      const live = source.closed || !source.listening ? make() : source;
      const heard: InterruptEvent[] = live === source ? events : [];
      if (live !== source)
        live.listen(
          (e) => heard.push(e),
          () => undefined,
        );
      const before = heard.length;
      live.raise?.(1);
      for (let i = 0; i < 200 && heard.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 1));
      expect(heard.length).toBeGreaterThan(before);
      if (live !== source) live.close();
    },
    dispose: () => {
      source.close();
      return [];
    },
  };
}

describe('interrupt sources', () => {
  const eventfd = (options?: { listening?: boolean; closed?: boolean }) => () =>
    sourceSubject(() => new EventfdInterruptSource('bad-inputs irq'), options);
  const polling = (options?: { listening?: boolean; closed?: boolean }) => () =>
    sourceSubject(() => new PollingInterruptSource({ intervalMs: 1 }), options);
  const STATE = TransportError.STATE;
  table<SourceSubject>([
    [
      'eventfd: a second listener',
      eventfd(),
      (s) =>
        s.source.listen(
          () => undefined,
          () => undefined,
        ),
      throws(VirtioError, STATE),
    ],
    [
      'eventfd: a listener that is not a function',
      eventfd({ listening: false }),
      (s) => s.source.listen(bad('x'), bad('y')),
      throws(TypeError),
    ],
    ['eventfd: raise(-1)', eventfd(), (s) => s.source.raise!(-1), throws(RangeError)],
    ['eventfd: raise(1.5)', eventfd(), (s) => s.source.raise!(1.5), throws(RangeError)],
    ['eventfd: raise("1")', eventfd(), (s) => s.source.raise!(bad('1')), throws(TypeError)],
    [
      'eventfd: listen after close()',
      eventfd({ listening: false, closed: true }),
      (s) =>
        s.source.listen(
          () => undefined,
          () => undefined,
        ),
      throws(ClosedError, CLOSED),
    ],
    ['eventfd: enable after close()', eventfd({ closed: true }), (s) => s.source.enable(), throws(ClosedError, CLOSED)],
    [
      'eventfd: disable after close()',
      eventfd({ closed: true }),
      (s) => s.source.disable(),
      throws(ClosedError, CLOSED),
    ],
    ['eventfd: raise after close()', eventfd({ closed: true }), (s) => s.source.raise!(), throws(ClosedError, CLOSED)],
    [
      'polling: a second listener',
      polling(),
      (s) =>
        s.source.listen(
          () => undefined,
          () => undefined,
        ),
      throws(VirtioError, STATE),
    ],
    [
      'polling: a listener that is not a function',
      polling({ listening: false }),
      (s) => s.source.listen(bad(1), bad(2)),
      throws(TypeError),
    ],
    [
      'polling: listen after close()',
      polling({ listening: false, closed: true }),
      (s) =>
        s.source.listen(
          () => undefined,
          () => undefined,
        ),
      throws(ClosedError, CLOSED),
    ],
    ['polling: enable after close()', polling({ closed: true }), (s) => s.source.enable(), throws(ClosedError, CLOSED)],
    [
      'polling: an interval of 0 ms',
      polling(),
      () => new PollingInterruptSource({ intervalMs: 0 }),
      throws(RangeError),
    ],
    [
      'polling: an interval of 1.5 ms',
      polling(),
      () => new PollingInterruptSource({ intervalMs: 1.5 }),
      throws(RangeError),
    ],
    [
      'polling: an interval of 2^31 ms',
      polling(),
      () => new PollingInterruptSource({ intervalMs: 2 ** 31 }),
      throws(RangeError),
    ],
    [
      'polling: a string interval',
      polling(),
      () => new PollingInterruptSource({ intervalMs: bad('5') }),
      throws(TypeError),
    ],
  ]);
});

// ---------------------------------------------------------------------------
// Transport

type Phase = 'reset' | 'features-ok' | 'live' | 'closed';
interface TransportSubject extends Subject {
  rig: SimRig;
  transport: MmioTransport;
  blk?: VirtioBlk;
}

const BLK_DISK_SECTORS = 64;
const blkModel = (options: BlkModelOptions = {}): BlkModel =>
  new BlkModel({
    disk: new Uint8Array(BLK_DISK_SECTORS * 512),
    discard: { maxSectors: 8, maxSegments: 2 },
    writeZeroes: { maxSectors: 8, maxSegments: 2 },
    ...options,
  });

/** A block device's transport brought to `phase` (live: a VirtioBlk owns it). */
function transportAt(variant: SimVariant, phase: Phase): () => TransportSubject {
  return () => {
    let blk: VirtioBlk | undefined;
    return rigSubject(variant, blkModel(), (rig) => {
      const { transport, pool } = rig;
      if (phase === 'features-ok') transport.negotiate(TRANSPORT_FEATURES);
      if (phase === 'live') blk = VirtioBlk.open(transport, { memory: pool });
      if (phase === 'closed') transport.close();
      return {
        transport,
        blk,
        good: async () => {
          if (phase === 'reset') {
            transport.negotiate(TRANSPORT_FEATURES);
            expect(transport.queueNumMax(0)).toBe(128);
          } else if (phase === 'features-ok') {
            expect(transport.queueNumMax(0)).toBe(128);
          } else if (phase === 'live') {
            expect(await blk!.read(0, 512)).toHaveLength(512);
          } else {
            await reopenAndUse(
              rig,
              (t) => VirtioBlk.open(t, { memory: pool }),
              async (d) => expect(await d.read(0, 512)).toHaveLength(512),
            );
          }
        },
        close: () => blk?.close(),
      };
    });
  };
}

/** Addresses of a real, unused queue area (what activateQueue is given). */
function queueArea(s: TransportSubject, size: number): { size: number; desc: bigint; driver: bigint; device: bigint } {
  const region = s.rig.pool.allocate(4 * 4096, 4096);
  s.rig.pool.free(region); // only the addresses are needed; the call must refuse before using them
  return { size, desc: region.iova, driver: region.iova + 4096n, device: region.iova + 8192n };
}
const endpoint: QueueEndpoint = { onUsedBuffer: () => 0, detach: () => undefined };

function transportRows(variant: SimVariant): Row<TransportSubject>[] {
  const at = (phase: Phase): (() => TransportSubject) => transportAt(variant, phase);
  const STATE = TransportError.STATE;
  const ringReset = variant !== 1; // the Version 1 sim does not offer RING_RESET
  const modern = variant !== 1;
  return [
    // construction
    ['new MmioTransport(undefined)', at('reset'), () => new MmioTransport(bad(undefined)), throws(TypeError)],
    [
      'guestPageSize 1000',
      at('reset'),
      (s) => new MmioTransport(s.rig.sim, { guestPageSize: 1000 }),
      throws(RangeError),
    ],
    ['queueAlign 8', at('reset'), (s) => new MmioTransport(s.rig.sim, { queueAlign: 8 }), throws(RangeError)],
    ['resetTimeoutMs -1', at('reset'), (s) => new MmioTransport(s.rig.sim, { resetTimeoutMs: -1 }), throws(RangeError)],
    ['configRetries 0', at('reset'), (s) => new MmioTransport(s.rig.sim, { configRetries: 0 }), throws(RangeError)],
    // wrong phase
    ['driverOk() before negotiate()', at('reset'), (s) => s.transport.driverOk(), throws(TransportError, STATE)],
    ['queueNumMax() before negotiate()', at('reset'), (s) => s.transport.queueNumMax(0), throws(TransportError, STATE)],
    [
      'activateQueue() before negotiate()',
      at('reset'),
      (s) => s.transport.activateQueue(0, queueArea(s, 16), endpoint),
      throws(TransportError, STATE),
    ],
    ['notify() before DRIVER_OK', at('features-ok'), (s) => s.transport.notify(0, 0), throws(TransportError, STATE)],
    ...(modern
      ? ([
          [
            'a config write before FEATURES_OK',
            at('reset'),
            (s) => s.transport.config.write8(20, 1),
            throws(TransportError, STATE),
          ],
        ] as Row<TransportSubject>[])
      : []),
    ['queueNumMax() after DRIVER_OK', at('live'), (s) => s.transport.queueNumMax(0), throws(TransportError, STATE)],
    [
      'activateQueue() after DRIVER_OK',
      at('live'),
      (s) => s.transport.activateQueue(0, queueArea(s, 16), endpoint),
      throws(TransportError, STATE),
    ],
    ['driverOk() twice', at('live'), (s) => s.transport.driverOk(), throws(TransportError, STATE)],
    [
      'negotiate() on a transport a driver owns',
      at('live'),
      (s) => s.transport.negotiate(0n),
      throws(TransportError, STATE),
    ],
    [
      'a second driver on a transport a driver owns',
      at('live'),
      (s) => VirtioBlk.open(s.transport, { memory: s.rig.pool }),
      throws(TransportError, STATE),
    ],
    // queue index and size
    ['queueNumMax(-1)', at('features-ok'), (s) => s.transport.queueNumMax(-1), throws(RangeError)],
    ['queueNumMax(65536)', at('features-ok'), (s) => s.transport.queueNumMax(65536), throws(RangeError)],
    ['queueNumMax(1.5)', at('features-ok'), (s) => s.transport.queueNumMax(1.5), throws(RangeError)],
    ['queueNumMax(NaN)', at('features-ok'), (s) => s.transport.queueNumMax(NaN), throws(RangeError)],
    ['queueNumMax("0")', at('features-ok'), (s) => s.transport.queueNumMax(bad('0')), throws(ARGUMENT_ERROR)],
    ...(variant !== 'packed'
      ? ([
          [
            'activateQueue of size 3 (split rings need a power of two)',
            at('features-ok'),
            (s) => s.transport.activateQueue(0, queueArea(s, 3), endpoint),
            throws(RangeError),
          ],
        ] as Row<TransportSubject>[])
      : []),
    [
      'activateQueue of size 0',
      at('features-ok'),
      (s) => s.transport.activateQueue(0, queueArea(s, 0), endpoint),
      throws(RangeError),
    ],
    [
      'activateQueue above QueueNumMax',
      at('features-ok'),
      (s) => s.transport.activateQueue(0, queueArea(s, 256), endpoint),
      throws(RangeError),
    ],
    [
      'activateQueue of a queue the device lacks',
      at('features-ok'),
      (s) => s.transport.activateQueue(5, queueArea(s, 16), endpoint),
      throws(TransportError, TransportError.QUEUE_UNAVAILABLE),
    ],
    ...(variant === 1
      ? ([
          [
            'activateQueue with areas not laid out as §2.7.2',
            at('features-ok'),
            (s) => s.transport.activateQueue(0, { ...queueArea(s, 16), device: 0x1230n }, endpoint),
            throws(RangeError),
          ],
        ] as Row<TransportSubject>[])
      : []),
    ['deactivateQueue(-1)', at('features-ok'), (s) => s.transport.deactivateQueue(-1), throws(RangeError)],
    [
      'resetQueue(-1)',
      at('live'),
      (s) => s.transport.resetQueue(-1),
      ringReset ? throws(RangeError) : throws(TransportError, TransportError.NOT_NEGOTIATED),
    ],
    [
      'resetQueue of a queue the device lacks',
      at('live'),
      (s) => s.transport.resetQueue(3),
      ringReset
        ? throws(TransportError, TransportError.QUEUE_UNAVAILABLE)
        : throws(TransportError, TransportError.NOT_NEGOTIATED),
    ],
    [
      'resetQueue before negotiate()',
      at('reset'),
      (s) => s.transport.resetQueue(0),
      throws(TransportError, TransportError.NOT_NEGOTIATED),
    ],
    ['notify(-1)', at('live'), (s) => s.transport.notify(-1, 0), throws(RangeError)],
    ['notify(65536)', at('live'), (s) => s.transport.notify(65536, 0), throws(RangeError)],
    ['notify(1.5)', at('live'), (s) => s.transport.notify(1.5, 0), throws(RangeError)],
    [
      'notify of a queue that is not set up',
      at('live'),
      (s) => s.transport.notify(7, 0),
      throws(TransportError, STATE),
    ],
    // config space (blk: 60 bytes and more)
    [
      'config read32 at an unaligned offset',
      at('features-ok'),
      (s) => s.transport.config.read32(2),
      throws(RangeError),
    ],
    ['config read16 at an odd offset', at('features-ok'), (s) => s.transport.config.read16(1), throws(RangeError)],
    [
      'config read32 past the config space',
      at('features-ok'),
      (s) => s.transport.config.read32(s.transport.config.size),
      throws(RangeError),
    ],
    [
      'config read64 straddling the end',
      at('features-ok'),
      (s) => s.transport.config.read64(s.transport.config.size - 4),
      throws(RangeError),
    ],
    ['config read8 at -1', at('features-ok'), (s) => s.transport.config.read8(-1), throws(RangeError)],
    ['config read8 at NaN', at('features-ok'), (s) => s.transport.config.read8(NaN), throws(RangeError)],
    [
      'config read32 at a string offset',
      at('features-ok'),
      (s) => s.transport.config.read32(bad('0')),
      throws(ARGUMENT_ERROR),
    ],
    ['config readBytes of -1 bytes', at('features-ok'), (s) => s.transport.config.readBytes(0, -1), throws(RangeError)],
    [
      'config readBytes past the end',
      at('features-ok'),
      (s) => s.transport.config.readBytes(s.transport.config.size - 2, 4),
      throws(RangeError),
    ],
    ['config write32 of 2^32', at('live'), (s) => s.transport.config.write32(0, 2 ** 32), throws(RangeError)],
    [
      'config write8 past the end',
      at('live'),
      (s) => s.transport.config.write8(s.transport.config.size, 0),
      throws(RangeError),
    ],
    // SHM regions (§2.10)
    ['shmRegion(-1)', at('features-ok'), (s) => s.transport.shmRegion(-1), throws(RangeError)],
    ['shmRegion(256)', at('features-ok'), (s) => s.transport.shmRegion(256), throws(RangeError)],
    ['shmRegion(0.5)', at('features-ok'), (s) => s.transport.shmRegion(0.5), throws(RangeError)],
    ['shmRegion("0")', at('features-ok'), (s) => s.transport.shmRegion(bad('0')), throws(ARGUMENT_ERROR)],
    // closed
    ['negotiate() after close()', at('closed'), (s) => s.transport.negotiate(0n), throws(ClosedError, CLOSED)],
    ['reset() after close()', at('closed'), (s) => s.transport.reset(), throws(ClosedError, CLOSED)],
    ['driverOk() after close()', at('closed'), (s) => s.transport.driverOk(), throws(ClosedError, CLOSED)],
    ['queueNumMax() after close()', at('closed'), (s) => s.transport.queueNumMax(0), throws(ClosedError, CLOSED)],
    ['resetQueue() after close()', at('closed'), (s) => s.transport.resetQueue(0), throws(ClosedError, CLOSED)],
    ['shmRegion() after close()', at('closed'), (s) => s.transport.shmRegion(0), throws(ClosedError, CLOSED)],
    ['notify() after close()', at('closed'), (s) => s.transport.notify(0, 0), throws(ClosedError, CLOSED)],
    ['a config read after close()', at('closed'), (s) => s.transport.config.read32(0), throws(ClosedError, CLOSED)],
    [
      'a driver on a closed transport',
      at('closed'),
      (s) => VirtioBlk.open(s.transport, { memory: s.rig.pool }),
      throws(ClosedError, CLOSED),
    ],
  ];
}

// ---------------------------------------------------------------------------
// Drivers: opening (wrong device type, bad options)

interface OpenSubject extends Subject {
  rig: SimRig;
  transport: MmioTransport;
}

/** A fresh transport on a sim holding `model`; the good call opens the right driver and uses it. */
function fresh(
  variant: SimVariant,
  model: () => SimDeviceModel,
  use: (rig: SimRig) => Promise<void>,
): () => OpenSubject {
  return () => rigSubject(variant, model(), (rig) => ({ transport: rig.transport, good: () => use(rig) }));
}

function openRows(variant: SimVariant): Row<OpenSubject>[] {
  const useRng = async (rig: SimRig): Promise<void> => {
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    try {
      expect(await rng.read(32)).toHaveLength(32);
    } finally {
      rng.close();
    }
  };
  const useBlk = async (rig: SimRig): Promise<void> => {
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    try {
      expect(await blk.read(0, 512)).toHaveLength(512);
    } finally {
      blk.close();
    }
  };
  const rng = fresh(variant, () => new RngModel(), useRng);
  const blk = fresh(variant, () => blkModel(), useBlk);
  const net = fresh(
    variant,
    () => new NetModel(),
    async (rig) => {
      const driver = VirtioNet.open(rig.transport, { memory: rig.pool });
      try {
        await driver.send(Buffer.alloc(60, 1));
      } finally {
        driver.close();
      }
    },
  );
  const con = fresh(
    variant,
    () => new ConsoleModel(),
    async (rig) => {
      const driver = VirtioConsole.open(rig.transport, { memory: rig.pool });
      try {
        await settleOnce((cb) => driver.stream.write('ok', cb));
      } finally {
        driver.close();
      }
    },
  );
  const WRONG = TransportError.WRONG_DEVICE;
  return [
    [
      'VirtioBlk on an entropy device',
      rng,
      (s) => VirtioBlk.open(s.transport, { memory: s.rig.pool }),
      throws(TransportError, WRONG),
    ],
    [
      'VirtioNet on an entropy device',
      rng,
      (s) => VirtioNet.open(s.transport, { memory: s.rig.pool }),
      throws(TransportError, WRONG),
    ],
    [
      'VirtioConsole on an entropy device',
      rng,
      (s) => VirtioConsole.open(s.transport, { memory: s.rig.pool }),
      throws(TransportError, WRONG),
    ],
    [
      'a user driver for device 42 on an entropy device',
      rng,
      (s) => new EchoDriver(s.transport, { memory: s.rig.pool }),
      throws(TransportError, WRONG),
    ],
    [
      'VirtioRng on a block device',
      blk,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool }),
      throws(TransportError, WRONG),
    ],
    ['VirtioRng without options', rng, (s) => VirtioRng.open(s.transport, bad(undefined)), throws(TypeError)],
    ['VirtioRng without memory', rng, (s) => VirtioRng.open(s.transport, bad({})), throws(TypeError)],
    [
      'VirtioRng with memory that is no allocator',
      rng,
      (s) => VirtioRng.open(s.transport, bad({ memory: {} })),
      throws(TypeError),
    ],
    [
      'VirtioRng with requestBytes 0',
      rng,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool, requestBytes: 0 }),
      throws(RangeError),
    ],
    [
      'VirtioRng with queueSize 0',
      rng,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool, queueSize: 0 }),
      throws(RangeError),
    ],
    [
      'VirtioRng with queueSize 1.5',
      rng,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool, queueSize: 1.5 }),
      throws(RangeError),
    ],
    [
      'VirtioRng with indirectMax 1',
      rng,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool, indirectMax: 1 }),
      throws(RangeError),
    ],
    [
      'VirtioRng with queue mode "fast"',
      rng,
      (s) => VirtioRng.open(s.transport, { memory: s.rig.pool, queueMode: bad('fast') }),
      throws(TypeError),
    ],
    [
      'VirtioBlk with maxRequestBytes 100',
      blk,
      (s) => VirtioBlk.open(s.transport, { memory: s.rig.pool, maxRequestBytes: 100 }),
      throws(RangeError),
    ],
    [
      'VirtioNet with receiveBuffers 0',
      net,
      (s) => VirtioNet.open(s.transport, { memory: s.rig.pool, receiveBuffers: 0 }),
      throws(RangeError),
    ],
    [
      'VirtioNet with maxQueuedFrames 1.5',
      net,
      (s) => VirtioNet.open(s.transport, { memory: s.rig.pool, maxQueuedFrames: 1.5 }),
      throws(RangeError),
    ],
    [
      'VirtioConsole with maxPorts 0',
      con,
      (s) => VirtioConsole.open(s.transport, { memory: s.rig.pool, maxPorts: 0 }),
      throws(RangeError),
    ],
    [
      'VirtioConsole with receiveBufferBytes 0',
      con,
      (s) => VirtioConsole.open(s.transport, { memory: s.rig.pool, receiveBufferBytes: 0 }),
      throws(RangeError),
    ],
  ];
}

// ---------------------------------------------------------------------------
// Queue: Virtqueue.submit through a user driver (EchoDriver, device 42, 16 entries)

interface QueueSubject extends Subject {
  driver: EchoDriver;
  rig: SimRig;
  region: DmaRegion;
  /** Requests the device holds (the 'full' setup). */
  held: Promise<number>[];
}

/** A model that holds every request until release() (then echoes it), or echoes at once when not holding. */
function holdingEcho(): SimDeviceModel & { release(): void; holding: boolean } {
  const waiting: (() => void)[] = [];
  const model = {
    ...echoModel({ queueSizes: [16] }),
    holding: false,
    release() {
      model.holding = false;
      for (const go of waiting.splice(0)) go();
    },
    handle: (request: SimRequest): number | Promise<number> =>
      model.holding
        ? new Promise<number>((resolve) => waiting.push(() => resolve(echoRequest(request))))
        : echoRequest(request),
  };
  return model;
}

function queueAt(variant: SimVariant, state: 'open' | 'no-indirect' | 'full' | 'closed'): () => QueueSubject {
  return () => {
    const model = holdingEcho();
    return rigSubject(variant, model, (rig) => {
      const exclude = state === 'no-indirect' ? features(FeatureBit.INDIRECT_DESC) : 0n;
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 16, excludeFeatures: exclude });
      const region = rig.pool.allocate(64);
      const held: Promise<number>[] = [];
      if (state === 'full') {
        model.holding = true;
        for (let i = 0; i < 16; i++) held.push(driver.q.submit({ writable: [{ region, offset: i * 4, length: 4 }] }));
      }
      if (state === 'closed') driver.close();
      return {
        driver,
        region,
        held,
        good: async () => {
          if (state === 'closed') {
            await reopenAndUse(
              rig,
              (t) => new EchoDriver(t, { memory: rig.pool }),
              async (d) => expect(await d.echo([Buffer.from('again')], [5])).toEqual(Buffer.from('again')),
            );
            return;
          }
          model.release();
          // Writable-only requests echo nothing back: each completes with 0 bytes.
          expect(await Promise.all(held)).toEqual(held.map(() => 0));
          expect(await driver.echo([Buffer.from('still works')], [11])).toEqual(Buffer.from('still works'));
        },
        close: () => {
          driver.close();
          rig.pool.free(region);
        },
      };
    });
  };
}

/** A region-shaped object of `size` bytes that is no DMA memory at all (for length checks that must come first). */
const fakeRegion = (size: number): DmaRegion => ({ view: new ArrayBuffer(0), offset: 0, size, iova: 0x4000_0000n });

function queueRows(variant: SimVariant): Row<QueueSubject>[] {
  const open = queueAt(variant, 'open');
  const submit = (request: unknown) => (s: QueueSubject) => s.driver.q.submit(bad<QueueRequest>(request));
  const buffer = (extra: object) => (s: QueueSubject) =>
    s.driver.q.submit({ writable: [{ region: s.region, ...extra }] });
  return [
    ['submit(null)', open, submit(null), rejects(TypeError)],
    ['submit(undefined)', open, submit(undefined), rejects(TypeError)],
    ['submit(42)', open, submit(42), rejects(TypeError)],
    ['submit of a string', open, submit('request'), rejects(TypeError)],
    ['an empty request {}', open, submit({}), rejects(RangeError)],
    ['a request with two empty lists', open, submit({ readable: [], writable: [] }), rejects(RangeError)],
    ['readable that is not an array', open, submit({ readable: 'abc' }), rejects(TypeError)],
    ['a null buffer', open, submit({ readable: [null] }), rejects(TypeError)],
    ['a buffer without a region', open, submit({ writable: [{}] }), rejects(TypeError)],
    ['a buffer whose region is null', open, submit({ writable: [{ region: null }] }), rejects(TypeError)],
    ['a buffer past the end of its region', open, buffer({ offset: 32, length: 33 }), rejects(RangeError)],
    ['a buffer at a negative offset', open, buffer({ offset: -1, length: 8 }), rejects(RangeError)],
    ['a buffer at a fractional offset', open, buffer({ offset: 1.5, length: 8 }), rejects(RangeError)],
    ['a buffer of length 0', open, buffer({ length: 0 }), rejects(RangeError)],
    ['a buffer of length -8', open, buffer({ length: -8 }), rejects(RangeError)],
    ['a buffer of length NaN', open, buffer({ length: NaN }), rejects(RangeError)],
    ['a buffer starting at the end of its region', open, buffer({ offset: 64 }), rejects(RangeError)],
    [
      'a chain longer than the ring and the indirect table (33 buffers)',
      open,
      (s) =>
        s.driver.q.submit({
          writable: Array.from({ length: 33 }, (_, i) => ({ region: s.region, offset: i, length: 1 })),
        }),
      rejects(RangeError),
    ],
    [
      'a chain longer than the ring without indirect (17 buffers)',
      queueAt(variant, 'no-indirect'),
      (s) =>
        s.driver.q.submit({
          writable: Array.from({ length: 17 }, (_, i) => ({ region: s.region, offset: i, length: 1 })),
        }),
      rejects(RangeError),
    ],
    [
      'a chain of more than 2^32 - 1 bytes',
      open,
      (s) => s.driver.q.submit({ writable: [0, 1, 2].map(() => ({ region: fakeRegion(2 ** 31) })) }),
      rejects(RangeError),
    ],
    [
      'a buffer in a region already freed',
      open,
      (s) => {
        const region = s.rig.pool.allocate(64);
        s.rig.pool.free(region);
        return s.driver.q.submit({ writable: [{ region }] });
      },
      rejects(ClosedError, CLOSED),
    ],
    [
      'an already aborted signal',
      open,
      (s) => s.driver.q.submit({ writable: [{ region: s.region }] }, { signal: abortedSignal() }),
      rejects(AbortError, ABORTED),
    ],
    [
      '{ wait: false } on a full ring',
      queueAt(variant, 'full'),
      (s) => s.driver.q.submit({ writable: [{ region: s.region }] }, { wait: false }),
      rejects(QueueFullError, 'ERR_VIRTIO_QUEUE_FULL'),
    ],
    ['setMode("fast")', open, (s) => s.driver.q.setMode(bad('fast')), throws(TypeError)],
    [
      'setMode("hybrid") spinning -1 µs',
      open,
      (s) => s.driver.q.setMode('hybrid', { spinMicros: -1 }),
      throws(RangeError),
    ],
    [
      'setMode("poll") with a burst of NaN µs',
      open,
      (s) => s.driver.q.setMode('poll', { burstMicros: NaN }),
      throws(RangeError),
    ],
    ['queueStats of a queue the driver lacks', open, (s) => s.driver.queueStats(9), throws(RangeError)],
    ['setQueueMode on a queue the driver lacks', open, (s) => s.driver.setQueueMode('poll', {}, 9), throws(RangeError)],
    [
      'submit after close()',
      queueAt(variant, 'closed'),
      (s) => s.driver.q.submit({ writable: [{ region: s.region }] }),
      rejects(ClosedError, CLOSED),
    ],
    [
      'setMode after close()',
      queueAt(variant, 'closed'),
      (s) => s.driver.q.setMode('poll'),
      throws(ClosedError, CLOSED),
    ],
  ];
}

// ---------------------------------------------------------------------------
// Drivers: requests

interface DriverSubject<D> extends Subject {
  driver: D;
  rig: SimRig;
  model: SimDeviceModel;
}

/**
 * `open` on a fresh rig with `model`; `closed`: closed before the bad call (the good call then reopens on the same
 * sim).
 */
function driverAt<D extends { close(): void }, M extends SimDeviceModel>(
  variant: SimVariant,
  model: () => M,
  open: (transport: MmioTransport, pool: DmaPool) => D,
  use: (driver: D, model: M) => Promise<void>,
  closed = false,
): () => DriverSubject<D> {
  return () => {
    const m = model();
    return rigSubject(variant, m, (rig) => {
      const driver = open(rig.transport, rig.pool);
      if (closed) driver.close();
      return {
        driver,
        model: m,
        good: () =>
          closed
            ? reopenAndUse(
                rig,
                (t) => open(t, rig.pool),
                (d) => use(d, m),
              )
            : use(driver, m),
        close: () => driver.close(),
      };
    });
  };
}

function rngRows(variant: SimVariant): Row<DriverSubject<VirtioRng>>[] {
  const at = (closed = false) =>
    driverAt(
      variant,
      () => new RngModel(),
      (t, memory) => VirtioRng.open(t, { memory }),
      async (d) => expect(await d.read(100)).toHaveLength(100),
      closed,
    );
  const open = at();
  return [
    ['read(-1)', open, (s) => s.driver.read(-1), rejects(RangeError)],
    ['read(NaN)', open, (s) => s.driver.read(NaN), rejects(RangeError)],
    ['read(1.5)', open, (s) => s.driver.read(1.5), rejects(RangeError)],
    ['read(Infinity)', open, (s) => s.driver.read(Infinity), rejects(RangeError)],
    ['read(2^31)', open, (s) => s.driver.read(2 ** 31), rejects(RangeError)],
    ['read("16")', open, (s) => s.driver.read(bad('16')), rejects(ARGUMENT_ERROR)],
    ['read()', open, (s) => bad<() => Promise<Buffer>>(s.driver.read).call(s.driver), rejects(ARGUMENT_ERROR)],
    ['read(0)', open, (s) => s.driver.read(0), resolvesQuietly],
    [
      'read with an aborted signal',
      open,
      (s) => s.driver.read(64, { signal: abortedSignal() }),
      rejects(AbortError, ABORTED),
    ],
    ['read after close()', at(true), (s) => s.driver.read(16), rejects(ClosedError, CLOSED)],
    ['read(0) after close()', at(true), (s) => s.driver.read(0), rejects(ClosedError, CLOSED)],
  ];
}

function blkRows(variant: SimVariant): Row<DriverSubject<VirtioBlk>>[] {
  const at = (options: BlkModelOptions = {}, closed = false, driverOptions: Partial<VirtioBlkOptions> = {}) =>
    driverAt(
      variant,
      () => blkModel(options),
      (t, memory) => VirtioBlk.open(t, { memory, ...driverOptions }),
      async (d) => {
        if (!d.info.readOnly) await d.write(1, sector(7));
        expect(await d.read(1, 512)).toEqual(d.info.readOnly ? Buffer.alloc(512) : sector(7));
      },
      closed,
    );
  const open = at();
  const readOnly = at({ readOnly: true });
  const closed = at({}, true);
  const end = BLK_DISK_SECTORS;
  const IO = 'ERR_VIRTIO_IO';
  const RO = 'ERR_VIRTIO_READ_ONLY';
  return [
    // sector ranges and lengths
    ['read at the capacity', open, (s) => s.driver.read(end, 512), rejects(RangeError)],
    ['read straddling the capacity', open, (s) => s.driver.read(end - 1, 1024), rejects(RangeError)],
    ['read at sector 2^64', open, (s) => s.driver.read(2n ** 64n, 512), rejects(RangeError)],
    ['read at sector 2^53', open, (s) => s.driver.read(2 ** 53, 512), rejects(RangeError)],
    ['read at sector -1', open, (s) => s.driver.read(-1, 512), rejects(RangeError)],
    ['read at sector -1n', open, (s) => s.driver.read(-1n, 512), rejects(RangeError)],
    ['read at sector 0.5', open, (s) => s.driver.read(0.5, 512), rejects(RangeError)],
    ['read at sector NaN', open, (s) => s.driver.read(NaN, 512), rejects(RangeError)],
    ['read at sector "0"', open, (s) => s.driver.read(bad('0'), 512), rejects(ARGUMENT_ERROR)],
    ['read of 0 bytes', open, (s) => s.driver.read(0, 0), rejects(RangeError)],
    ['read of 100 bytes (not whole sectors)', open, (s) => s.driver.read(0, 100), rejects(RangeError)],
    ['read of 513 bytes', open, (s) => s.driver.read(0, 513), rejects(RangeError)],
    ['read of -512 bytes', open, (s) => s.driver.read(0, -512), rejects(RangeError)],
    ['read of 2 GiB + 512 bytes', open, (s) => s.driver.read(0, 2 ** 31 + 512), rejects(RangeError)],
    ['read into a 100-byte buffer', open, (s) => s.driver.read(0, new Uint8Array(100)), rejects(RangeError)],
    // An empty target or source is a documented no-op: it resolves and sends nothing.
    ['read into an empty buffer', open, (s) => s.driver.read(0, new Uint8Array(0)), resolvesQuietly],
    ['read into a string', open, (s) => s.driver.read(0, bad('abc')), rejects(TypeError)],
    ['read into a Uint16Array', open, (s) => s.driver.read(0, bad(new Uint16Array(256))), rejects(TypeError)],
    ['read on request queue 1 of 1', open, (s) => s.driver.read(0, 512, { queue: 1 }), rejects(RangeError)],
    ['read on request queue -1', open, (s) => s.driver.read(0, 512, { queue: -1 }), rejects(RangeError)],
    [
      'read with an aborted signal',
      open,
      (s) => s.driver.read(0, 512, { signal: abortedSignal() }),
      rejects(AbortError, ABORTED),
    ],
    ['write at the capacity', open, (s) => s.driver.write(end, sector(1)), rejects(RangeError)],
    ['write at sector -1', open, (s) => s.driver.write(-1, sector(1)), rejects(RangeError)],
    ['write of 100 bytes', open, (s) => s.driver.write(0, Buffer.alloc(100)), rejects(RangeError)],
    ['write of 0 bytes', open, (s) => s.driver.write(0, Buffer.alloc(0)), resolvesQuietly],
    ['write of a string', open, (s) => s.driver.write(0, bad('x'.repeat(512))), rejects(TypeError)],
    ['write of a plain array', open, (s) => s.driver.write(0, bad(new Array(512).fill(0))), rejects(TypeError)],
    [
      'getId with an aborted signal',
      open,
      (s) => s.driver.getId({ signal: abortedSignal() }),
      rejects(AbortError, ABORTED),
    ],
    // discard and write zeroes (limits: 8 sectors, 2 segments)
    ['discard of no ranges', open, (s) => s.driver.discard([]), rejects(RangeError)],
    [
      'discard of 3 ranges (limit 2)',
      open,
      (s) => s.driver.discard([0, 8, 16].map((n) => ({ sector: n, sectors: 1 }))),
      rejects(RangeError),
    ],
    ['discard of 0 sectors', open, (s) => s.driver.discard([{ sector: 0, sectors: 0 }]), rejects(RangeError)],
    ['discard of 9 sectors (limit 8)', open, (s) => s.driver.discard([{ sector: 0, sectors: 9 }]), rejects(RangeError)],
    [
      'discard past the capacity',
      open,
      (s) => s.driver.discard([{ sector: end - 4, sectors: 8 }]),
      rejects(RangeError),
    ],
    ['discard of a string', open, (s) => s.driver.discard(bad('0-8')), rejects(ARGUMENT_ERROR)],
    ['writeZeroes of no ranges', open, (s) => s.driver.writeZeroes([]), rejects(RangeError)],
    [
      'writeZeroes at the capacity',
      open,
      (s) => s.driver.writeZeroes([{ sector: end, sectors: 1 }]),
      rejects(RangeError),
    ],
    [
      'writeZeroes of 1.5 sectors',
      open,
      (s) => s.driver.writeZeroes([{ sector: 0, sectors: 1.5 }]),
      rejects(RangeError),
    ],
    // features the device lacks
    ['flush without VIRTIO_BLK_F_FLUSH', at({ flush: false }), (s) => s.driver.flush(), resolvesQuietly],
    // Refused as a device would answer (status UNSUPP), as Linux returns EOPNOTSUPP; nothing is sent.
    [
      'discard without VIRTIO_BLK_F_DISCARD',
      at({ discard: undefined }),
      (s) => s.driver.discard([{ sector: 0, sectors: 1 }]),
      rejects(DeviceIoError, IO),
    ],
    [
      'writeZeroes without VIRTIO_BLK_F_WRITE_ZEROES',
      at({ writeZeroes: undefined }),
      (s) => s.driver.writeZeroes([{ sector: 0, sectors: 1 }]),
      rejects(DeviceIoError, IO),
    ],
    // read-only device
    ['write to a read-only device', readOnly, (s) => s.driver.write(0, sector(1)), rejects(ReadOnlyError, RO)],
    [
      'discard on a read-only device',
      readOnly,
      (s) => s.driver.discard([{ sector: 0, sectors: 1 }]),
      rejects(ReadOnlyError, RO),
    ],
    [
      'writeZeroes on a read-only device',
      readOnly,
      (s) => s.driver.writeZeroes([{ sector: 0, sectors: 1 }]),
      rejects(ReadOnlyError, RO),
    ],
    ['a write stream on a read-only device', readOnly, (s) => s.driver.createWriteStream(), throws(ReadOnlyError, RO)],
    // DMA buffers and streams
    ['allocBuffer(0)', open, (s) => s.driver.allocBuffer(0), throws(RangeError)],
    ['allocBuffer(-512)', open, (s) => s.driver.allocBuffer(-512), throws(RangeError)],
    [
      'freeBuffer of a Buffer not from allocBuffer',
      open,
      (s) => s.driver.freeBuffer(Buffer.alloc(512)),
      throws(RangeError),
    ],
    [
      'freeBuffer twice',
      open,
      (s) => {
        const b = s.driver.allocBuffer(512);
        s.driver.freeBuffer(b);
        s.driver.freeBuffer(b);
      },
      throws(RangeError),
    ],
    [
      'a read stream from an unaligned byte',
      open,
      (s) => s.driver.createReadStream({ start: 100 }),
      throws(RangeError),
    ],
    [
      'a read stream past the capacity',
      open,
      (s) => s.driver.createReadStream({ end: (end + 1) * 512 }),
      throws(RangeError),
    ],
    [
      'a read stream ending before it starts',
      open,
      (s) => s.driver.createReadStream({ start: 1024, end: 512 }),
      throws(RangeError),
    ],
    [
      'a read stream in 100-byte chunks',
      open,
      (s) => s.driver.createReadStream({ chunkSize: 100 }),
      throws(RangeError),
    ],
    [
      'a write stream from an unaligned byte',
      open,
      (s) => s.driver.createWriteStream({ start: 3 }),
      throws(RangeError),
    ],
    // closed
    ['read after close()', closed, (s) => s.driver.read(0, 512), rejects(ClosedError, CLOSED)],
    ['write after close()', closed, (s) => s.driver.write(0, sector(1)), rejects(ClosedError, CLOSED)],
    ['flush after close()', closed, (s) => s.driver.flush(), rejects(ClosedError, CLOSED)],
    ['getId after close()', closed, (s) => s.driver.getId(), rejects(ClosedError, CLOSED)],
    [
      'discard after close()',
      closed,
      (s) => s.driver.discard([{ sector: 0, sectors: 1 }]),
      rejects(ClosedError, CLOSED),
    ],
  ];
}

function netRows(variant: SimVariant): Row<DriverSubject<VirtioNet>>[] {
  const at = (closed = false) =>
    driverAt(
      variant,
      () => new NetModel(),
      (t, memory) => VirtioNet.open(t, { memory }),
      async (d, model) => {
        await d.send(Buffer.alloc(60, 0xab));
        expect((model as NetModel).sent.at(-1)).toEqual(Buffer.alloc(60, 0xab));
      },
      closed,
    );
  const open = at();
  return [
    ['send of an empty frame', open, (s) => s.driver.send(Buffer.alloc(0)), rejects(RangeError)],
    ['send of 13 bytes (shorter than a header)', open, (s) => s.driver.send(Buffer.alloc(13)), rejects(RangeError)],
    [
      `send of ${NET_MAX_FRAME + 1} bytes`,
      open,
      (s) => s.driver.send(Buffer.alloc(NET_MAX_FRAME + 1)),
      rejects(RangeError),
    ],
    ['send of 64 KiB', open, (s) => s.driver.send(Buffer.alloc(65536)), rejects(RangeError)],
    ['send of a string', open, (s) => s.driver.send(bad('frame'.repeat(20))), rejects(TypeError)],
    ['send(null)', open, (s) => s.driver.send(bad(null)), rejects(TypeError)],
    ['send of a Uint16Array', open, (s) => s.driver.send(bad(new Uint16Array(30))), rejects(TypeError)],
    ['send after close()', at(true), (s) => s.driver.send(Buffer.alloc(60)), rejects(ClosedError, CLOSED)],
  ];
}

function consoleRows(variant: SimVariant): Row<DriverSubject<VirtioConsole>>[] {
  const at = (options: { multiport?: boolean; closed?: boolean } = {}) =>
    driverAt(
      variant,
      () =>
        new ConsoleModel(options.multiport ? { multiport: { maxPorts: 4, ports: [{ id: 0, console: true }] } } : {}),
      (t, memory) => {
        const con = VirtioConsole.open(t, { memory });
        con.stream.on('error', () => undefined); // writes after close report through their callbacks
        return con;
      },
      async (d, model) => {
        await settleOnce((cb) => d.stream.write('still works', cb));
        expect((model as ConsoleModel).output.toString()).toContain('still works');
      },
      options.closed,
    );
  const single = at();
  const multi = at({ multiport: true });
  const closed = at({ multiport: true, closed: true });
  const closedSingle = at({ closed: true });
  return [
    ['a write of a number', single, (s) => s.driver.stream.write(bad(42)), throws(TypeError, 'ERR_INVALID_ARG_TYPE')],
    ['waitForPort(-1)', multi, (s) => s.driver.waitForPort(-1), rejects(RangeError)],
    ['waitForPort(1.5)', multi, (s) => s.driver.waitForPort(1.5), rejects(RangeError)],
    ['waitForPort(NaN)', multi, (s) => s.driver.waitForPort(NaN), rejects(RangeError)],
    [
      'waitForPort beyond maxPorts (4 of ids 0..3)',
      multi,
      (s) => s.driver.waitForPort(4, { timeoutMs: 200 }),
      rejects(RangeError),
    ],
    [
      'waitForPort of an object',
      multi,
      (s) => s.driver.waitForPort(bad({ id: 1 }), { timeoutMs: 200 }),
      rejects(TypeError),
    ],
    [
      'waitForPort with a timeout of -1 ms',
      multi,
      (s) => s.driver.waitForPort('log', { timeoutMs: -1 }),
      rejects(RangeError),
    ],
    [
      'waitForPort with an aborted signal',
      multi,
      (s) => s.driver.waitForPort('log', { signal: abortedSignal() }),
      rejects(AbortError, ABORTED),
    ],
    [
      'waitForPort(1) without MULTIPORT',
      single,
      (s) => s.driver.waitForPort(1),
      rejects(PortError, PortError.NO_MULTIPORT),
    ],
    [
      'a write after close()',
      closed,
      (s) => settleOnce((cb) => s.driver.stream.write('late', cb)),
      rejects(Error, 'ERR_STREAM_DESTROYED'),
    ],
    [
      'opening port 0 after close()',
      closedSingle,
      (s) => s.driver.port(0)!.open(),
      throws(PortError, PortError.ABSENT),
    ],
    ['waitForPort after close()', closed, (s) => s.driver.waitForPort('log'), rejects(PortError, PortError.ABSENT)],
  ];
}

describe.each(SIM_VARIANTS)('on the sim, %s', (_label, variant) => {
  describe('MmioTransport', () => table(transportRows(variant)));
  describe('opening drivers', () => table(openRows(variant)));
  describe('Virtqueue', () => table(queueRows(variant)));
  describe('VirtioRng', () => table(rngRows(variant)));
  describe('VirtioBlk', () => table(blkRows(variant)));
  describe('VirtioNet', () => table(netRows(variant)));
  describe('VirtioConsole', () => table(consoleRows(variant)));
});

// ---------------------------------------------------------------------------
// Close during I/O: 32 requests, close in the same tick, in the next, or while the device holds them

interface Race<D> extends RaceSubject {
  driver: D;
  rig: SimRig;
}

/**
 * A driver on a fresh rig whose model holds every request when `hold`
 * (until the good call, which reopens the device and uses it).
 */
function raceOn<D extends { close(): void }, M extends SimDeviceModel>(
  variant: SimVariant,
  model: () => M,
  open: (transport: MmioTransport, pool: DmaPool) => D,
  use: (driver: D) => Promise<void>,
  moment: CloseMoment,
): () => Race<D> {
  return () => {
    const m = model();
    let holding = moment === 'device holds them';
    const handle = m.handle.bind(m);
    m.handle = (request) => (holding ? new Promise<number>(() => undefined) : handle(request));
    return rigSubject(variant, m, (rig) => {
      const idleMemory = memoryUse(rig.pool);
      const driver = open(rig.transport, rig.pool);
      return {
        driver,
        idleMemory,
        good: () => {
          holding = false;
          return reopenAndUse(rig, (t) => open(t, rig.pool), use);
        },
        close: () => driver.close(),
      };
    });
  };
}

const thirtyTwo = <T>(make: (i: number) => T): T[] => Array.from({ length: 32 }, (_, i) => make(i));
const canceled = rejects(CanceledError, CANCELED);

function raceRows(variant: SimVariant, moment: CloseMoment): CloseRow<Race<{ close(): void }>>[] {
  const rng = (queueSize: number) =>
    raceOn(
      variant,
      () => new RngModel({ queueSize }),
      (t, memory) => VirtioRng.open(t, { memory }),
      async (d) => expect(await d.read(64)).toHaveLength(64),
      moment,
    );
  const blk = (queueSize: number) =>
    raceOn(
      variant,
      () => blkModel({ queueSize }),
      (t, memory) => VirtioBlk.open(t, { memory }),
      async (d) => expect(await d.read(0, 512)).toHaveLength(512),
      moment,
    );
  const net = raceOn(
    variant,
    () => new NetModel(),
    (t, memory) => VirtioNet.open(t, { memory }),
    (d) => d.send(Buffer.alloc(60)),
    moment,
  );
  const echo = raceOn(
    variant,
    () => echoModel({ queueSizes: [16] }),
    (t, memory) => new EchoDriver(t, { memory, queueSize: 16 }),
    async (d) => expect(await d.echo([Buffer.from('x')], [1])).toEqual(Buffer.from('x')),
    moment,
  );
  const con = raceOn(
    variant,
    () => new ConsoleModel(),
    (t, memory) => {
      const c = VirtioConsole.open(t, { memory });
      c.stream.on('error', () => undefined);
      return c;
    },
    (d) => settleOnce((cb) => d.stream.write('ok', cb)),
    moment,
  );
  type AnyRace = Race<{ close(): void }>;
  const as = <D>(setup: () => Race<D>): (() => AnyRace) => setup as unknown as () => AnyRace;
  return [
    ['VirtioRng: 32 reads', as(rng(64)), (s) => thirtyTwo(() => (s.driver as VirtioRng).read(64)), canceled],
    [
      'VirtioRng: 32 reads on an 8-entry queue (24 wait for room)',
      as(rng(8)),
      (s) => thirtyTwo(() => (s.driver as VirtioRng).read(4096)),
      canceled,
    ],
    ['VirtioBlk: 32 reads', as(blk(128)), (s) => thirtyTwo((i) => (s.driver as VirtioBlk).read(i, 512)), canceled],
    [
      'VirtioBlk: 32 writes',
      as(blk(128)),
      (s) => thirtyTwo((i) => (s.driver as VirtioBlk).write(i, sector(i))),
      canceled,
    ],
    [
      'VirtioBlk: 32 reads on an 8-entry queue (24 wait for room)',
      as(blk(8)),
      (s) => thirtyTwo((i) => (s.driver as VirtioBlk).read(i, 512)),
      canceled,
    ],
    [
      'VirtioNet: 32 frames sent',
      as(net),
      (s) => thirtyTwo((i) => (s.driver as VirtioNet).send(Buffer.alloc(60, i))),
      canceled,
    ],
    [
      'Virtqueue: 32 submits on a 16-entry ring (16 wait for room)',
      as(echo),
      (s) => thirtyTwo((i) => (s.driver as EchoDriver).echo([Buffer.from([i])], [1])),
      canceled,
    ],
    [
      'VirtioConsole: 32 writes (each callback called once, with an error)',
      as(con),
      (s) => thirtyTwo((i) => settleOnce((cb) => (s.driver as VirtioConsole).stream.write(`line ${i}\n`, cb))),
      canceled,
    ],
  ];
}

describe.each(SIM_VARIANTS)('close during I/O, %s', (_label, variant) => {
  describe.each<[CloseMoment]>([['same tick'], ['next tick'], ['device holds them']])('close in the %s', (moment) => {
    it.each(
      raceRows(variant, moment).map(
        (row) =>
          [...row] as [string, CloseRow<Race<{ close(): void }>>[1], CloseRow<Race<{ close(): void }>>[2], Expected],
      ),
    )('%s: every request rejects once, none pending, nothing leaked', (_description, setup, start, want) =>
      runCloseRace(setup, start, moment, want),
    );
  });
});
