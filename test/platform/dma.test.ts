import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { ClosedError, DmaError, SyscallError } from '../../lib/errors';
import { makeNativeError, native } from '../../lib/platform/addon';
import { DmaPool } from '../../lib/platform/dma-pool';
import { describeIf, freeHugepages, isRoot } from '../support/requirements';

const HUGE = 2 * 1024 * 1024;

describe('anonymous DMA memory', () => {
  it('gives zeroed memory of the asked size at the given device address', () => {
    const m = native.allocAnonymous(100, 0x1234_0000n);
    expect(m.kind).toBe('anonymous');
    expect(m.size).toBe(100);
    expect(m.iova).toBe(0x1234_0000n);
    expect(m.view.byteLength).toBe(100);
    expect(new Uint8Array(m.view).every((b) => b === 0)).toBe(true);
    expect(m.translate(99)).toBe(0x1234_0063n);
    m.free();
  });

  it('detaches the ArrayBuffer on free, and free is idempotent', () => {
    const m = native.allocAnonymous(4096, 0n);
    const bytes = new Uint8Array(m.view);
    bytes[0] = 1;
    m.free();
    expect(m.freed).toBe(true);
    expect(m.view.byteLength).toBe(0);
    expect(bytes.length).toBe(0); // views over a detached buffer are empty
    expect(() => m.translate(0)).toThrow(ClosedError);
    m.free();
  });

  it.each<[string, () => unknown, typeof RangeError | typeof TypeError]>([
    ['size 0', () => native.allocAnonymous(0, 0n), RangeError],
    ['negative size', () => native.allocAnonymous(-1, 0n), RangeError],
    ['fractional size', () => native.allocAnonymous(1.5, 0n), RangeError],
    ['size over the cap', () => native.allocAnonymous(2 ** 40, 0n), RangeError],
    ['size as string', () => native.allocAnonymous('4096' as unknown as number, 0n), TypeError],
    ['iova overflow', () => native.allocAnonymous(4096, 0xffff_ffff_ffff_f000n), RangeError],
    ['negative iova', () => native.allocAnonymous(4096, -1n), RangeError],
    ['translate past the end', () => native.allocAnonymous(16, 0n).translate(16), RangeError],
  ])('rejects %s', (_name, call, type) => {
    expect(call).toThrow(type);
  });
});

describe('DmaPool over anonymous chunks', () => {
  it('aligns regions in device-address space and zeroes them', () => {
    const pool = DmaPool.anonymous(0x8000_0010n - 0x10n, 64 * 1024);
    const a = pool.allocate(10);
    const b = pool.allocate(100, 4096);
    const c = pool.allocate(6, 2);
    expect(a.size).toBe(10);
    expect(b.iova % 4096n).toBe(0n);
    expect(c.iova % 16n).toBe(0n); // never below the 16-byte granule
    expect(b.iova - 0x8000_0000n).toBe(BigInt(b.offset));
    new Uint8Array(b.view, b.offset, b.size).fill(0xaa);
    pool.free(b);
    const again = pool.allocate(100, 4096);
    expect(again.iova).toBe(b.iova); // first fit reuses the freed space
    expect(new Uint8Array(again.view, again.offset, again.size).every((x) => x === 0)).toBe(true);
    pool.close();
  });

  it('never hands out overlapping regions, and coalesces on free', () => {
    const pool = DmaPool.anonymous(0n, 16 * 1024);
    const regions = Array.from({ length: 40 }, (_, i) => pool.allocate(16 + 24 * (i % 7), 1 << (i % 9)));
    const spans = regions.map((r) => [r.iova, r.iova + BigInt(r.size)] as const).sort((x, y) => (x[0] < y[0] ? -1 : 1));
    for (let i = 1; i < spans.length; i++) expect(spans[i][0] >= spans[i - 1][1]).toBe(true);
    for (const r of regions) pool.free(r);
    const stats = pool.stats();
    expect(stats.regions).toBe(0);
    expect(stats.bytesInUse).toBe(0);
    // Everything coalesced back: one allocation of a whole chunk fits again without growing.
    const chunks = stats.chunks;
    pool.allocate(16 * 1024, 16);
    expect(pool.stats().chunks).toBe(chunks);
    pool.close();
  });

  it('grows by chunks when full and detaches every view on close', () => {
    const pool = DmaPool.anonymous(0n, 4096);
    const first = pool.allocate(4096);
    const second = pool.allocate(4096);
    expect(pool.stats().chunks).toBe(2);
    const big = pool.allocate(3 * 4096 + 5);
    expect(big.size).toBe(3 * 4096 + 5);
    pool.close();
    for (const r of [first, second, big]) expect(r.view.byteLength).toBe(0);
    expect(() => pool.allocate(16)).toThrow(ClosedError);
  });

  it('rejects double free, foreign regions and bad arguments', () => {
    const pool = DmaPool.anonymous();
    const other = DmaPool.anonymous();
    const r = pool.allocate(64);
    pool.free(r);
    expect(() => pool.free(r)).toThrow(RangeError);
    expect(() => pool.free(other.allocate(64))).toThrow(RangeError);
    expect(() => pool.allocate(0)).toThrow(RangeError);
    expect(() => pool.allocate(64, 3)).toThrow(RangeError);
    expect(() => pool.allocate(64, 1 << 22)).toThrow(RangeError);
    pool.close();
    other.close();
  });

  it('isLive: true for a region it handed out, until that region is freed or the pool closed', () => {
    const pool = DmaPool.anonymous();
    const other = DmaPool.anonymous();
    const kept = pool.allocate(64);
    const freed = pool.allocate(64);
    const foreign = other.allocate(64);
    expect(pool.isLive(kept)).toBe(true);
    expect(pool.isLive(freed)).toBe(true);
    pool.free(freed);
    expect(pool.isLive(freed)).toBe(false);
    expect(pool.isLive(kept)).toBe(true); // freeing a neighbour leaves it alone
    // The same space handed out again is a new region; the stale object stays dead.
    const reused = pool.allocate(64);
    expect(reused.iova).toBe(freed.iova);
    expect(pool.isLive(reused)).toBe(true);
    expect(pool.isLive(freed)).toBe(false);
    // Only the very object handed out counts: not an equal copy, not another pool's region.
    expect(pool.isLive({ ...kept })).toBe(false);
    expect(pool.isLive(foreign)).toBe(false);
    expect(other.isLive(foreign)).toBe(true);
    pool.close();
    expect(pool.isLive(kept)).toBe(false);
    other.close();
  });

  it('free after close() is a ClosedError', () => {
    const pool = DmaPool.anonymous();
    const r = pool.allocate(64);
    pool.close();
    expect(() => pool.free(r)).toThrow(ClosedError);
    expect(() => pool.free(r)).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_CLOSED' }));
  });

  it('reports exhaustion of a fixed pool as a typed error', () => {
    let handed = false;
    const pool = new DmaPool(() => {
      if (handed) throw new Error('must not be asked twice');
      handed = true;
      return native.allocAnonymous(4096, 0x1000n);
    }, false);
    pool.allocate(4000);
    expect(() => pool.allocate(200)).toThrow(expect.objectContaining({ code: DmaError.EXHAUSTED }));
    pool.close();
  });
});

describeIf(
  isRoot() && freeHugepages() >= 2,
  'needs root and at least 2 free hugepages (echo 16 > /proc/sys/vm/nr_hugepages)',
  'hugetlb DMA memory',
  () => {
    it('has a non-zero physical address from pagemap that stays the same', () => {
      const m = native.allocHugetlb(8192);
      expect(m.kind).toBe('hugetlb');
      expect(m.iova).toBeGreaterThan(0n);
      expect(m.iova % BigInt(HUGE)).toBe(0n); // a hugepage is naturally aligned
      new Uint8Array(m.view).fill(0x5a); // touching it must not move it
      expect(m.translate(0)).toBe(m.iova);
      expect(m.translate(4097)).toBe(m.iova + 4097n);
      m.free();
      expect(m.view.byteLength).toBe(0);
    });

    it('checks contiguity across hugepages (or says it is not contiguous)', () => {
      let m;
      try {
        m = native.allocHugetlb(2 * HUGE);
      } catch (error) {
        expect(error).toBeInstanceOf(DmaError);
        expect((error as DmaError).code).toBe(DmaError.NOT_CONTIGUOUS);
        return;
      }
      expect(m.translate(HUGE + 8)).toBe(m.iova + BigInt(HUGE + 8));
      m.free();
    });

    it('says there are no free hugepages, and how to reserve them', () => {
      const tooMany = (freeHugepages() + 1) * HUGE;
      let thrown: unknown;
      try {
        native.allocHugetlb(tooMany);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(SyscallError);
      const e = thrown as SyscallError;
      expect(e.code).toBe('ENOMEM');
      expect(e.syscall).toBe('mmap');
      expect(e.hint).toMatch(/HugePages_Free \d+ of \d+.*nr_hugepages/);
    });

    it('serves a pool of many small regions from one hugepage', () => {
      const pool = DmaPool.hugetlb();
      const regions = Array.from({ length: 32 }, () => pool.allocate(4096, 4096));
      expect(pool.stats().chunks).toBe(1);
      for (const r of regions) expect(r.iova % 4096n).toBe(0n);
      pool.close();
    });

    it('without CAP_SYS_ADMIN, says pagemap hides physical addresses', () => {
      // The child runs as nobody from a world-readable copy of the addon.
      const dir = mkdtempSync(join(tmpdir(), 'dma-nobody-'));
      try {
        chmodSync(dir, 0o755);
        copyFileSync(resolve(__dirname, '../../build/Release/virtio_mmio.node'), join(dir, 'addon.node'));
        writeFileSync(
          join(dir, 'child.js'),
          `const a = require(${JSON.stringify(join(dir, 'addon.node'))});
         try { a.allocHugetlb(4096); console.log('{}'); }
         catch (e) {
           const { code, errno, syscall, path, message } = e;
           console.log(JSON.stringify({ code, errno, syscall, path, message }));
         }`,
        );
        const child = spawnSync(process.execPath, [join(dir, 'child.js')], {
          uid: 65534,
          gid: 65534,
          encoding: 'utf8',
        });
        expect(child.status).toBe(0);
        const failure = JSON.parse(child.stdout);
        expect(failure).toMatchObject({ code: 'EPERM', errno: -1, syscall: 'read', path: '/proc/self/pagemap' });
        const typed = makeNativeError('syscall', failure.message, failure) as SyscallError;
        expect(typed.hint).toMatch(/CAP_SYS_ADMIN/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

describe('/dev/mem carve-outs', () => {
  it('fail with the syscall, the path and a hint when /dev/mem cannot be used', () => {
    // Physical address 0 is never a carve-out we would own; only the error path is checked here.
    let thrown: unknown;
    let m;
    try {
      m = native.mapPhysical(0x10_0000_0000n, 4096);
    } catch (error) {
      thrown = error;
    }
    if (m) {
      m.free();
      return; // a kernel that allows it: nothing to check on this host
    }
    expect(thrown).toBeInstanceOf(SyscallError);
    expect((thrown as SyscallError).path).toBe('/dev/mem');
    expect((thrown as SyscallError).hint).toBeDefined();
  });

  it('validates its arguments before opening anything', () => {
    expect(() => native.mapPhysical(-5n, 4096)).toThrow(RangeError);
    expect(() => native.mapPhysical(0x1000n, 0)).toThrow(RangeError);
  });
});
