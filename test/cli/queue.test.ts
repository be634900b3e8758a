import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { runCli } from '../../lib/cli/main';
import { QUEUE_USAGE, runQueue, type QueueDependencies, type QueueReport } from '../../lib/cli/queue';
import { DEVICE_RULES } from '../../lib/diag';
import { DmaPool, type InterruptSource } from '../../lib/platform';
import { SimDevice, type SimDeviceModel, type SimOptions, type SimRequest, type SimViolation } from '../../lib/sim';
import { FeatureBit, RingViolation, deviceTypeName, feature, features } from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';

/** A device type the library has no driver for. */
const REVERSE_ID = 0xf00d;
/** Its one device feature (a device-type bit, §6: below 24): upper-case what it writes back. */
const UPPER = 3;

/**
 * The test's own device: queue 0 takes a chain, and writes the readable
 * bytes back reversed into the writable buffers (as far as they go);
 * `handle` can be replaced to make it misbehave.
 */
class ReverseModel implements SimDeviceModel {
  readonly deviceId = REVERSE_ID;
  readonly features = feature(UPPER);
  readonly queueSizes = [8];
  readonly config = new Uint8Array(0);
  negotiated = 0n;
  chains: { readable: number; writable: number[] }[] = [];

  constructor(private readonly lie?: (request: SimRequest) => number | Promise<number>) {}

  driverOk(negotiated: bigint): void {
    this.negotiated = negotiated;
  }

  handle(request: SimRequest): number | Promise<number> {
    this.chains.push({ readable: request.readableBytes, writable: request.writable.map((b) => b.length) });
    if (this.lie) return this.lie(request);
    let bytes = Buffer.concat(request.readable.map((b) => Buffer.from(b))).reverse();
    if (this.negotiated & feature(UPPER)) bytes = Buffer.from(bytes.toString('latin1').toUpperCase(), 'latin1');
    let written = 0;
    for (const buffer of request.writable) {
      const part = bytes.subarray(written, written + buffer.length);
      buffer.set(part);
      written += part.length;
    }
    return written;
  }
}

const PACKED_TRANSPORT = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.RING_PACKED,
);
type Variant = 1 | 2 | 'packed';

/**
 * Opens the test's device whatever the name says, the sim in strict mode (every driver-side MUST we break is recorded).
 */
function onReverse(
  model: ReverseModel,
  variant: Variant = 2,
  extra: Partial<SimOptions> = {},
): { deps: QueueDependencies; violations: SimViolation[]; state: { opened: number; closed: number } } {
  const violations: SimViolation[] = [];
  const state = { opened: 0, closed: 0 };
  const deps: QueueDependencies = {
    open(_target, options) {
      state.opened++;
      const memory = DmaPool.anonymous();
      const packed = variant === 'packed';
      const sim = new SimDevice({
        memory,
        model,
        version: packed ? 2 : variant,
        label: 'sim reverse',
        strict: true,
        onViolation: (v) => violations.push(v),
        ...(packed ? { transportFeatures: PACKED_TRANSPORT } : {}),
        ...extra,
      });
      const transport = new MmioTransport(options.wrapRegisters ? options.wrapRegisters(sim) : sim, {
        ...options.transport,
        interrupts: sim.interrupt as InterruptSource,
      });
      return {
        where: 'sim reverse',
        transport,
        memory,
        close() {
          state.closed++;
          transport.close();
          sim.close();
          memory.close();
        },
      };
    },
  };
  return { deps, violations, state };
}

async function run(deps: QueueDependencies, ...args: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await runQueue(
    ['sim:empty', ...args],
    { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) } },
    deps,
  );
  return { status, out, err };
}

async function runJson(
  deps: QueueDependencies,
  ...args: string[]
): Promise<{ status: number; report: QueueReport; err: string }> {
  const { status, out, err } = await run(deps, ...args, '--json');
  return { status, report: JSON.parse(out) as QueueReport, err };
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'virtio-mmio-queue-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('queue on a device the library has no driver for', () => {
  test('the device type is unknown to the library', () => {
    expect(deviceTypeName(REVERSE_ID)).toBeUndefined();
  });

  test.each([1, 2, 'packed'] as const)(
    'Version %s: transport features only, queue 0, one chain of 5 bytes out, 3 + 8 in: used len 5, the bytes reversed',
    async (variant) => {
      const model = new ReverseModel();
      const { deps, violations, state } = onReverse(model, variant);
      const { status, report, err } = await runJson(
        deps,
        '--queue',
        '0',
        '--out',
        '68656c6c6f',
        '--in',
        '3',
        '--in',
        '8',
      );
      expect({ status, err }).toEqual({ status: 0, err: '' });
      expect(report).toMatchObject({
        where: 'sim reverse',
        deviceId: REVERSE_ID,
        device: `device ${REVERSE_ID}`,
        version: variant === 1 ? 1 : 2,
        queue: { index: 0, size: 8, ring: variant === 'packed' ? 'packed' : 'split' },
        ok: true,
      });
      expect(report.chains).toEqual([
        { chain: 0, out: 5, in: [3, 8], usedLen: 5, hex: Buffer.from('olleh').toString('hex'), ms: expect.any(Number) },
      ]);
      // No device-type feature asked for by default; the device saw one chain: 5 readable bytes, then
      // buffers of 3 and 8.
      expect(report.features.every((name) => name.startsWith('VIRTIO_F_'))).toBe(true);
      expect(model.negotiated & feature(UPPER)).toBe(0n);
      expect(model.chains).toEqual([{ readable: 5, writable: [3, 8] }]);
      expect(report.strict).toBeUndefined();
      expect(violations).toEqual([]);
      expect(state).toEqual({ opened: 1, closed: 1 });
    },
  );

  test('the text form: device, features, queue, the used length and a hex dump of what the device wrote', async () => {
    const { deps } = onReverse(new ReverseModel());
    const { status, out, err } = await run(deps, '--queue', '0', '--out', '68 65 6c 6c 6f', '--in', '16');
    expect({ status, err }).toEqual({ status: 0, err: '' });
    const lines = out.split('\n');
    expect(lines[0]).toBe(`sim reverse: device ${REVERSE_ID}, virtio-mmio Version 2, vendor 0x4d4d4956 "VIMM"`);
    expect(lines[1]).toMatch(/^features offered 0x[0-9a-f]+; negotiated: VIRTIO_F_[A-Z_0-9]+(, VIRTIO_F_[A-Z_0-9]+)*$/);
    expect(lines[2]).toBe('queue 0: 8 entries, split ring');
    expect(lines[3]).toMatch(/^chain 0 \(5 bytes out, 16 bytes in\): used len 5 in \d+\.\d ms$/);
    expect(lines[4]).toBe('  00000000  6f 6c 6c 65 68                                    |olleh|');
    expect(lines.slice(-2)).toEqual(['ok', '']);
  });

  test('--features by number asks for a device-type bit; --features by an unknown name is a usage error', async () => {
    const model = new ReverseModel();
    const { deps } = onReverse(model);
    const { status, report } = await runJson(
      deps,
      '--queue',
      '0',
      '--features',
      String(UPPER),
      '--out',
      '6162',
      '--in',
      '2',
    );
    expect(status).toBe(0);
    expect(model.negotiated & feature(UPPER)).toBe(feature(UPPER));
    expect(report.features).toContain(`bit ${UPPER}`);
    expect(Buffer.from(report.chains[0].hex!, 'hex').toString()).toBe('BA');
    const unknown = await run(
      onReverse(new ReverseModel()).deps,
      '--queue',
      '0',
      '--features',
      'VIRTIO_BLK_F_RO',
      '--in',
      '2',
    );
    expect(unknown.status).toBe(2);
    expect(unknown.err).toMatch(
      /^virtio-mmio queue: ERR_VIRTIO_USAGE: --features: 'VIRTIO_BLK_F_RO' is neither a feature bit number/,
    );
  });

  test('--features a bit the device does not offer: exit 1, NegotiationError, device left FAILED, closed', async () => {
    const { deps, state } = onReverse(new ReverseModel());
    const { status, out, err } = await run(deps, '--queue', '0', '--features', '5', '--in', '2', '--json');
    expect(status).toBe(1);
    expect(err).toMatch(/^virtio-mmio queue: ERR_VIRTIO_FEATURE_MISSING: /);
    expect(JSON.parse(out)).toMatchObject({ error: { code: 'ERR_VIRTIO_FEATURE_MISSING' } });
    expect(state).toEqual({ opened: 1, closed: 1 });
  });

  test('--exclude takes transport features out (a packed-capable device driven on a split ring)', async () => {
    const { deps } = onReverse(new ReverseModel(), 'packed');
    const { status, report } = await runJson(
      deps,
      '--queue',
      '0',
      '--exclude',
      'RING_PACKED,VIRTIO_F_EVENT_IDX',
      '--in',
      '4',
      '--out',
      '01020304',
    );
    expect(status).toBe(0);
    expect(report.queue.ring).toBe('split');
    expect(report.features).not.toContain('VIRTIO_F_EVENT_IDX');
    expect(report.chains[0]).toMatchObject({ usedLen: 4, hex: '04030201' });
  });

  test('--chains 20, a queue of 8, --strict: each chain gets its own bytes back, no rule broken', async () => {
    const model = new ReverseModel();
    const { deps, violations } = onReverse(model, 'packed');
    const { status, report } = await runJson(
      deps,
      '--queue',
      '0',
      '--out',
      '@' + writeTo('chain.bin', Buffer.from('abcdef')),
      '--in',
      '6',
      '--chains',
      '20',
      '--strict',
    );
    expect(status).toBe(0);
    expect(report.chains.map((c) => [c.chain, c.usedLen, c.hex])).toEqual(
      Array.from({ length: 20 }, (_, i) => [i, 6, Buffer.from('fedcba').toString('hex')]),
    );
    expect(model.chains).toHaveLength(20);
    expect(report.strict).toEqual({ rules: Object.keys(DEVICE_RULES).length, violations: [] });
    expect(report.interrupts).toBeGreaterThan(0);
    expect(violations).toEqual([]);
  });

  test('a device never using the chain: ERR_VIRTIO_TIMEOUT, exit 1; --strict names the SHOULD it breaks', async () => {
    const { deps, state } = onReverse(new ReverseModel(() => new Promise<number>(() => undefined)));
    const { status, report } = await runJson(deps, '--queue', '0', '--in', '4', '--timeout', '50', '--strict');
    expect(status).toBe(1);
    expect(report.ok).toBe(false);
    expect(report.chains[0]).toMatchObject({ error: { code: 'ERR_VIRTIO_TIMEOUT' } });
    expect(report.strict?.violations.map((v) => [v.rule, v.level])).toEqual([['completes-requests', 'should']]);
    expect(state.closed).toBe(1);
    const text = await run(
      onReverse(new ReverseModel(() => new Promise<number>(() => undefined))).deps,
      '--queue',
      '0',
      '--in',
      '4',
      '--timeout',
      '50',
    );
    expect(text.out).toMatch(/^chain 0 \(0 bytes out, 4 bytes in\): FAILED ERR_VIRTIO_TIMEOUT: /m);
    expect(text.out.endsWith('FAILED\n')).toBe(true);
  });

  test('a device reporting more bytes written than given: caught, --strict reports the MUST (§2.7.8.1)', async () => {
    const { deps, violations } = onReverse(new ReverseModel(), 2, {
      hostile: { seed: 1, behaviours: { [RingViolation.USED_LEN_TOO_LONG]: true } },
    });
    const { status, report } = await runJson(deps, '--queue', '0', '--in', '4', '--strict');
    expect(status).toBe(1);
    expect(report.chains[0]).toMatchObject({ error: { code: 'ERR_VIRTIO_BROKEN' } });
    expect(report.strict?.violations).toEqual([
      expect.objectContaining({ rule: 'used-len-valid', level: 'must', section: '2.7.8.1' }),
    ]);
    expect(violations).toEqual([]);
  });

  test('a queue the device does not have: exit 1 with its code', async () => {
    const { deps } = onReverse(new ReverseModel());
    const { status, err } = await run(deps, '--queue', '1', '--in', '4');
    expect(status).toBe(1);
    expect(err).toMatch(/^virtio-mmio queue: ERR_VIRTIO_QUEUE_UNAVAILABLE: sim reverse: queue 1 does not exist/);
  });

  test.each([
    [['--in', '4'], 'queue needs --queue N'],
    [['--queue', '0'], 'queue needs something to post: --out HEX|@FILE, --in SIZE, or both'],
    [
      ['--queue', '0', '--out', 'abc'],
      "--out must be hex bytes (an even number of hex digits, up to 1 MiB) or @FILE, got 'abc'",
    ],
    [['--queue', '0', '--in', '0'], "--in must be an integer in [1, 1048576], got '0'"],
    [['--queue', '0', '--in', '4', '--chains', '0'], "--chains must be an integer in [1, 1024], got '0'"],
    [['--queue', '70000', '--in', '4'], "--queue must be an integer in [0, 65535], got '70000'"],
    [['--queue', '0', '--in', '4', '--bogus'], 'queue has no option --bogus'],
  ])('usage %j: exit 2 with the reason and the usage, the device not opened', async (args, message) => {
    const { deps, state } = onReverse(new ReverseModel());
    const { status, out, err } = await run(deps, ...args);
    expect(status).toBe(2);
    expect(out).toBe('');
    expect(err.split('\n')[0]).toBe(
      `virtio-mmio queue: ERR_VIRTIO_USAGE: ${message}` +
        `${message.endsWith('--bogus') ? ' (virtio-mmio queue --help lists the options)' : ''}`,
    );
    expect(err).toContain(QUEUE_USAGE);
    expect(state.opened).toBe(0);
  });
});

describe('queue through runCli, on software devices of known types addressed raw', () => {
  async function cli(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const status = await runCli(argv, {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (err += t) },
    });
    return { status, out, err };
  }

  test.each(['sim:rng:1', 'sim:rng', 'sim:rng:packed'])(
    '%s: an rng request by hand, 2 chains of 32 writable bytes, --strict',
    async (device) => {
      const { status, out, err } = await cli(
        'queue',
        device,
        '--queue',
        '0',
        '--in',
        '32',
        '--chains',
        '2',
        '--strict',
        '--json',
      );
      expect({ status, err }).toEqual({ status: 0, err: '' });
      const report = JSON.parse(out) as QueueReport;
      expect(report).toMatchObject({ deviceId: 4, device: 'ENTROPY (4)', ok: true, strict: { violations: [] } });
      expect(report.chains.map((c) => c.usedLen)).toEqual([32, 32]);
      for (const c of report.chains) expect(c.hex).toMatch(/^[0-9a-f]{64}$/);
    },
  );

  test('sim:console, queue 1 (port 0 transmitq): 6 bytes out, nothing to write back', async () => {
    const { status, out } = await cli('queue', 'sim:console', '--queue', '1', '--out', '68656c6c6f0a');
    expect(status).toBe(0);
    expect(out).toMatch(/^chain 0 \(6 bytes out, nothing in\): used len 0 in /m);
  });
});

function writeTo(name: string, data: Buffer): string {
  const file = join(tmp, name);
  writeFileSync(file, data);
  return file;
}
