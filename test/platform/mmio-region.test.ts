import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ClosedError } from '../../lib/errors';
import { native } from '../../lib/platform/addon';
import { MmioWindow } from '../../lib/platform/mmio-window';
import type { RegisterBlock } from '../../lib/platform/register-block';

const PAGE = native.pageSize;
let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mmio-region-'));
  file = join(dir, 'regs.bin');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function freshWindow(offset = 0x200, size = 0x200): RegisterBlock {
  writeFileSync(file, Buffer.alloc(2 * PAGE));
  return MmioWindow.openFile(file, offset, size);
}

const fileBytes = (at: number, n: number): number[] => [...readFileSync(file).subarray(at, at + n)];

describe('register window over a file', () => {
  it('round-trips every width and lays values out little-endian in the file', () => {
    const r = freshWindow();
    r.writel(0x00, 0x74726976);
    r.writew(0x06, 0xbeef);
    r.writeb(0x09, 0xa5);
    expect(r.readl(0x00)).toBe(0x74726976);
    expect(r.readw(0x06)).toBe(0xbeef);
    expect(r.readb(0x09)).toBe(0xa5);
    expect(r.readb(0x00)).toBe(0x76); // 'v' of "virt": the low byte comes first
    expect(r.readw(0x02)).toBe(0x7472);
    expect(fileBytes(0x200, 4)).toEqual([0x76, 0x69, 0x72, 0x74]);
    expect(fileBytes(0x206, 2)).toEqual([0xef, 0xbe]);
    expect(fileBytes(0x209, 1)).toEqual([0xa5]);
    r.close();
  });

  it('reads what another writer put in the file (shared mapping)', () => {
    const r = freshWindow();
    const bytes = Buffer.alloc(2 * PAGE);
    bytes.writeUInt32LE(0x12345678, 0x200 + 0x10);
    writeFileSync(file, bytes);
    expect(r.readl(0x10)).toBe(0x12345678);
    r.close();
  });

  it('accepts values as unsigned or as their signed equivalent', () => {
    const r = freshWindow();
    r.writel(0, -1);
    expect(r.readl(0)).toBe(0xffffffff);
    r.writew(4, -2);
    expect(r.readw(4)).toBe(0xfffe);
    r.writeb(8, 0xff);
    expect(r.readb(8)).toBe(0xff);
    r.close();
  });

  it('reports its size, label and closed state', () => {
    const r = freshWindow(0x1e00, 0x100);
    expect(r.size).toBe(0x100);
    expect(r.label).toContain('regs.bin');
    expect(r.label).toContain('0x1e00');
    expect(r.closed).toBe(false);
    r.writel(0xfc, 7);
    expect(fileBytes(0x1efc, 4)).toEqual([7, 0, 0, 0]);
    r.close();
    expect(r.closed).toBe(true);
    r.close(); // idempotent
  });

  type Access = [string, (r: RegisterBlock) => unknown, typeof RangeError | typeof TypeError, RegExp];
  const badAccesses: Access[] = [
    ['readl past the end', (r) => r.readl(0x200), RangeError, /offset 0x200 .*window of 0x200 bytes.*outside/],
    ['readl straddling the end', (r) => r.readl(0x1fe), RangeError, /outside/],
    ['readw past the end', (r) => r.readw(0x200), RangeError, /16-bit.*outside/],
    ['readb past the end', (r) => r.readb(0x200), RangeError, /8-bit.*outside/],
    ['misaligned readl', (r) => r.readl(2), RangeError, /32-bit access at offset 0x2 .*not naturally aligned/],
    ['misaligned readw', (r) => r.readw(1), RangeError, /not naturally aligned/],
    ['misaligned writel', (r) => r.writel(6, 0), RangeError, /not naturally aligned/],
    ['negative offset', (r) => r.readl(-4), RangeError, /offset -4 .*non-negative integer/],
    ['fractional offset', (r) => r.readl(1.5), RangeError, /non-negative integer/],
    ['NaN offset', (r) => r.readb(NaN), RangeError, /non-negative integer/],
    ['huge offset', (r) => r.readl(2 ** 60), RangeError, /outside/],
    ['string offset', (r) => (r.readl as (o: unknown) => number)('4'), TypeError, /offset must be a number/],
    ['no offset', (r) => (r.readl as () => number)(), TypeError, /offset must be a number/],
    ['value too large for 32 bits', (r) => r.writel(0, 2 ** 32), RangeError, /does not fit in 32 bits/],
    ['value too large for 8 bits', (r) => r.writeb(0, 256), RangeError, /does not fit in 8 bits/],
    ['value too negative for 16 bits', (r) => r.writew(0, -32769), RangeError, /does not fit in 16 bits/],
    ['fractional value', (r) => r.writel(0, 0.5), RangeError, /does not fit/],
    ['missing value', (r) => (r.writel as (o: number) => void)(0), TypeError, /value must be a number/],
    ['copyOut width 3', (r) => r.copyOut(0, new Uint8Array(6), 3 as 4), RangeError, /width must be 1, 2 or 4/],
    ['copyOut past the end', (r) => r.copyOut(0x1f0, new Uint8Array(0x20)), RangeError, /outside/],
    ['copyOut misaligned length', (r) => r.copyOut(0, new Uint8Array(6), 4), RangeError, /aligned/],
    ['copyIn misaligned offset', (r) => r.copyIn(2, new Uint8Array(4), 4), RangeError, /aligned/],
    [
      'copyOut into a non-byte array',
      (r) => r.copyOut(0, new Uint16Array(2) as unknown as Uint8Array),
      TypeError,
      /Uint8Array/,
    ],
    ['pollUntil past the end', (r) => r.pollUntil(0x200, 1, 1, 1), RangeError, /outside/],
    ['pollUntil unbounded timeout', (r) => r.pollUntil(0, 1, 1, 1e9), RangeError, /timeoutMs/],
  ];

  it.each(badAccesses)('%s throws before touching memory', (_name, access, type, message) => {
    const r = freshWindow();
    const before = readFileSync(file);
    expect(() => access(r)).toThrow(type);
    expect(() => access(r)).toThrow(message);
    expect(readFileSync(file).equals(before)).toBe(true);
    r.close();
  });

  it.each<[string, (r: RegisterBlock) => unknown]>([
    ['readb', (r) => r.readb(0)],
    ['readw', (r) => r.readw(0)],
    ['readl', (r) => r.readl(0)],
    ['writeb', (r) => r.writeb(0, 1)],
    ['writew', (r) => r.writew(0, 1)],
    ['writel', (r) => r.writel(0, 1)],
    ['copyOut', (r) => r.copyOut(0, new Uint8Array(4))],
    ['copyIn', (r) => r.copyIn(0, new Uint8Array(4))],
    ['pollUntil', (r) => r.pollUntil(0, 0, 0, 1)],
  ])('%s after close() throws ClosedError', (_name, access) => {
    const r = freshWindow();
    r.close();
    let thrown: unknown;
    try {
      access(r);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ClosedError);
    expect((thrown as ClosedError).code).toBe('ERR_VIRTIO_CLOSED');
    expect((thrown as Error).message).toMatch(/regs\.bin.* is closed/);
  });

  it('keeps the mapping alive for accessors taken off the object', () => {
    const r = freshWindow();
    const { readl, writel } = r;
    writel(0x20, 0xcafe);
    expect(readl(0x20)).toBe(0xcafe);
    r.close();
    expect(() => readl(0x20)).toThrow(ClosedError);
  });

  it('copies config-space style ranges at each width', () => {
    const r = freshWindow();
    const pattern = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    for (const width of [1, 2, 4] as const) {
      r.copyIn(0x100, pattern, width);
      expect(fileBytes(0x300, 16)).toEqual([...pattern]);
      const out = new Uint8Array(16);
      expect(r.copyOut(0x100, out, width)).toBe(out);
      expect([...out]).toEqual([...pattern]);
      r.copyIn(0x100, new Uint8Array(16), width);
    }
    r.close();
  });

  it('pollUntil returns the matching value, or null after the timeout', () => {
    const r = freshWindow();
    r.writel(0x70, 0x0000_0f03);
    expect(r.pollUntil(0x70, 0xff, 0x03, 10)).toBe(0x0f03);
    const start = process.hrtime.bigint();
    expect(r.pollUntil(0x70, 0xff, 0x04, 30, 100)).toBeNull();
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    expect(elapsedMs).toBeGreaterThanOrEqual(29);
    r.close();
  });

  it('refuses a window beyond the end of the file (an access there would be SIGBUS)', () => {
    writeFileSync(file, Buffer.alloc(PAGE));
    expect(() => MmioWindow.openFile(file, PAGE - 0x100, 0x200)).toThrow(/beyond the end/);
    expect(() => MmioWindow.openFile(file, 0, 0)).toThrow(RangeError);
  });

  it('reports a missing file as a syscall error with code, syscall and path', () => {
    expect(() => MmioWindow.openFile(join(dir, 'nope'), 0, 4)).toThrow(
      expect.objectContaining({ code: 'ENOENT', errno: -2, syscall: 'open', path: join(dir, 'nope') }),
    );
  });

  it('validates physical windows at the edge', () => {
    expect(() => MmioWindow.openPhysical(-1n, 0x200)).toThrow(TypeError);
    expect(() => MmioWindow.openPhysical(0x1000 as unknown as bigint, 0x200)).toThrow(TypeError);
    expect(() => MmioWindow.openPhysical(0x0a003e00n, 0)).toThrow(RangeError);
  });
});
