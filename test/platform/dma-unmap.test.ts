/**
 * free() must never unmap DMA memory that JS can still reach, and the
 * memory must still go once nothing can:
 * the mapping is released by the finalizers of the ArrayBuffer and of its
 * backing store, not by free(). Hugetlb (and /dev/mem) memory is the
 * exception in one respect: free() puts an anonymous mapping over the range
 * at once, so the hugepages go back then, and whatever still reaches the
 * range reads and writes that placeholder until it is unmapped.
 *
 * Each case runs in a child process: a use after unmap is a SIGSEGV, which
 * must show as a failed test, not as a dead jest worker. The children run the
 * library's TypeScript (transpiled on load, no build of dist/ needed) and say
 * how much is mapped: VmSize for anonymous memory (256 MiB, so that nothing
 * else moves it as much), the process's own HugetlbPages for hugetlb.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

import { describeIf, freeHugepages, isRoot } from '../support/requirements';

const root = resolve(__dirname, '../..');
const MiB = 1024 * 1024;
const ANON = 256 * MiB;
const HUGE = 2 * MiB;

const PRELUDE = `
  const fs = require('node:fs');
  const crypto = require('node:crypto');
  const { Worker } = require('node:worker_threads');
  require.extensions['.ts'] = (module, filename) => {
    const ts = require(${JSON.stringify(require.resolve('typescript'))});
    const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
    const source = fs.readFileSync(filename, 'utf8');
    module._compile(ts.transpileModule(source, { fileName: filename, compilerOptions }).outputText, filename);
  };
  const { DmaPool } = require(${JSON.stringify(resolve(root, 'lib/platform/dma-pool.ts'))});
  const { native } = require(${JSON.stringify(resolve(root, 'lib/platform/addon.ts'))});
  const ADDON = ${JSON.stringify(resolve(root, 'build/Release/virtio_mmio.node'))};
  // Bytes mapped: address space for anonymous memory, this process's hugepages for hugetlb.
  const mapped = (kind) => {
    const field = kind === 'hugetlb' ? 'HugetlbPages' : 'VmSize';
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    return Number(new RegExp(field + ':\\\\s+(\\\\d+) kB').exec(status)[1]) * 1024;
  };
  const alloc = (kind, size) =>
    kind === 'hugetlb' ? native.allocHugetlb(size) : native.allocAnonymous(size, 0x4000_0000n);
  // Finalizers run from immediates after a collection (backing stores may be swept on another thread first).
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      global.gc();
      await new Promise((done) => setTimeout(done, 10));
    }
  };
`;

interface Child {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `body` (async, may await) in a fresh node after PRELUDE; its last stdout line is JSON. */
function runChild(body: string, flags: string[] = []): Child {
  const script =
    `${PRELUDE}\n(async () => {\n${body}\n})().catch((error) ` + `=> { console.error(error); process.exit(1); });`;
  const child = spawnSync(process.execPath, ['--expose-gc', ...flags, '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

function report(child: Child): Record<string, unknown> {
  expect(child.stderr).toBe('');
  expect(child.signal).toBeNull(); // SIGSEGV before the fix
  expect(child.status).toBe(0);
  const lines = child.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

/** The V8 flags under which ArrayBuffer.prototype.transfer exists (Node 20 needs one), or undefined. */
const transferFlags = ((): string[] | undefined => {
  const has = (flags: string[]): boolean =>
    spawnSync(process.execPath, [
      ...flags,
      '-e',
      'process.exit(typeof ArrayBuffer.prototype.transfer === "function" ? 0 : 3)',
    ]).status === 0;
  if (has([])) return [];
  if (has(['--harmony-rab-gsab-transfer'])) return ['--harmony-rab-gsab-transfer'];
  return undefined;
})();

/** (a) free() after transfer(): the new buffer owns the backing store, which the detach in free() cannot reach. */
const transferredBody = (kind: string, size: number): string => `
  const size = ${size};
  let m = alloc('${kind}', size);
  new Uint8Array(m.view).fill(0xa5);
  let moved = m.view.transfer();
  m.free();
  let translateError;
  try { m.translate(0); } catch (e) { translateError = e.code; }
  await settle();
  let bytes = new Uint8Array(moved);
  bytes.fill(0x5a, 0, 16); // still writable, too
  const kept = { freed: m.freed, translateError, length: bytes.length, first: bytes[0], last: bytes[size - 1] };
  kept.viewLength = m.view.byteLength;
  const held = mapped('${kind}');
  moved = bytes = null;
  await settle();
  console.log(JSON.stringify({ ...kept, released: held - mapped('${kind}') }));
`;

/**
 * (a') hugetlb: free() after transfer() gives the hugepage back at once; the transferred buffer stays usable (the
 * anonymous placeholder: zeros, writable) and the placeholder goes once that buffer is collected.
 */
const transferredHugeBody = (size: number): string => `
  const size = ${size};
  const before = mapped('hugetlb');
  let m = alloc('hugetlb', size);
  new Uint8Array(m.view).fill(0xa5);
  const allocated = mapped('hugetlb') - before;
  let moved = m.view.transfer();
  m.free();
  const backAtFree = before + allocated - mapped('hugetlb');
  let bytes = new Uint8Array(moved);
  bytes.fill(0x5a, 0, 16);
  const kept = { freed: m.freed, allocated, backAtFree, length: bytes.length, first: bytes[0], last: bytes[size - 1] };
  const vm = mapped('anonymous');
  moved = bytes = null;
  await settle();
  console.log(JSON.stringify({ ...kept, placeholderUnmapped: vm - mapped('anonymous') >= size }));
`;

/** (b) the pool closes while a thread-pool job (crypto.randomFill) writes into one of its regions. */
const fillingBody = (kind: string, chunk: number, fill: number): string => `
  const pool = ${kind === 'hugetlb' ? `DmaPool.hugetlb(${chunk})` : `DmaPool.anonymous(0x4000_0000n, ${chunk})`};
  let region = pool.allocate(${fill});
  let view = new Uint8Array(region.view, region.offset, region.size);
  const filled = new Promise((done, fail) => crypto.randomFill(view, (error) => (error ? fail(error) : done())));
  const beforeClose = mapped('${kind}');
  pool.close();
  const closedHuge = ${kind === 'hugetlb'} ? beforeClose - mapped('hugetlb') : 0;
  const detached = view.length === 0 && region.view.byteLength === 0;
  await settle(); // the detached backing store's finalizer runs now, with the job still writing
  await filled;
  await settle();
  const held = mapped('${kind}');
  view = region = null;
  await settle();
  console.log(JSON.stringify({ detached, closedHuge, released: held - mapped('${kind}') }));
`;

describeIf(
  transferFlags !== undefined,
  'this Node has no ArrayBuffer.prototype.transfer, not even with --harmony-rab-gsab-transfer',
  'DMA memory whose buffer was transferred, then freed',
  () => {
    it('stays mapped and readable through the transferred buffer, unmapped once that is collected (anonymous)', () => {
      const result = report(runChild(transferredBody('anonymous', ANON), transferFlags));
      expect(result).toMatchObject({
        freed: true,
        translateError: 'ERR_VIRTIO_CLOSED',
        length: ANON,
        first: 0x5a,
        last: 0xa5,
        viewLength: 0,
      });
      expect(result.released).toBeGreaterThanOrEqual(ANON * 0.9);
    });
  },
);

describe('DMA memory freed while a thread-pool job writes into it', () => {
  it('survives pool.close() in crypto.randomFill; unmapped once the job is done, views collected (anonymous)', () => {
    const result = report(runChild(fillingBody('anonymous', ANON, 64 * MiB)));
    expect(result.detached).toBe(true); // free() still detaches at once
    expect(result.released).toBeGreaterThanOrEqual(ANON * 0.9);
  });
});

describe('DMA memory at the end of a worker thread', () => {
  it('is unmapped when the worker ends or is terminated, whether freed, kept, or transferred', () => {
    const canTransfer = transferFlags !== undefined;
    const result = report(
      runChild(
        `
      const size = ${ANON};
      const workerBody = \`
        const { parentPort } = require('node:worker_threads');
        const a = require(\${JSON.stringify(ADDON)});
        globalThis.kept = a.allocAnonymous(\${size}, 0n);            // never freed
        const freed = a.allocAnonymous(\${size}, 0n);
        globalThis.view = new Uint8Array(freed.view);                 // a view of memory freed below
        freed.free();
        if (${canTransfer}) {
          const m = a.allocAnonymous(\${size}, 0n);
          globalThis.moved = m.view.transfer();                       // owns the store when the worker ends
          m.free();
        }
        parentPort.postMessage('ready');
        parentPort.once('message', () => {});                         // stays until told, then ends by itself
      \`;
      const run = (end) => new Promise((done, fail) => {
        const w = new Worker(workerBody, { eval: true });
        let held;
        w.on('message', () => { held = mapped('anonymous'); end(w); });
        w.on('error', fail);
        w.on('exit', () => done(held));
      });
      await run((w) => w.postMessage('end')); // warm-up: thread arenas and the like stay mapped after it
      await settle();
      const before = mapped('anonymous');
      const results = {};
      for (const [name, end] of [['ends', (w) => w.postMessage('end')], ['terminated', (w) => w.terminate()]]) {
        const held = await run(end);
        await settle();
        results[name] = { held: held - before, left: mapped('anonymous') - before };
      }
      console.log(JSON.stringify(results));
    `,
        transferFlags ?? [],
      ),
    );
    const blocks = canTransfer ? 3 : 2;
    for (const name of ['ends', 'terminated']) {
      const { held, left } = result[name] as { held: number; left: number };
      expect(held).toBeGreaterThanOrEqual(blocks * ANON);
      expect(left).toBeLessThan(ANON / 2);
    }
  });
});

describeIf(
  isRoot() && freeHugepages() >= 2,
  'needs root and at least 2 free hugepages (echo 16 > /proc/sys/vm/nr_hugepages)',
  'hugetlb DMA memory, freed while reachable',
  () => {
    it('gives its hugepage back at free(); a transferred buffer reads the placeholder, unmapped once collected', () => {
      if (transferFlags === undefined) {
        console.warn('skipping the transfer case: no ArrayBuffer.prototype.transfer on this Node');
        return;
      }
      const result = report(runChild(transferredHugeBody(HUGE), transferFlags));
      expect(result).toEqual({
        freed: true,
        allocated: HUGE,
        backAtFree: HUGE, // the hugepage went back at free(), not at the next collection
        length: HUGE,
        first: 0x5a,
        last: 0, // the placeholder's, not the freed memory's 0xa5
        placeholderUnmapped: true,
      });
    });

    it('survives pool.close() in crypto.randomFill (it writes the placeholder); the hugepage is back at once', () => {
      const result = report(runChild(fillingBody('hugetlb', HUGE, HUGE)));
      expect(result.detached).toBe(true);
      expect(result.released).toBe(0); // nothing left to give back after the job: close() gave it
      expect(result.closedHuge).toBe(HUGE);
    });

    it('gives hugepages back at free(), without a collection: opening and closing pools never runs out', () => {
      const result = report(
        runChild(`
        const start = fs.readFileSync('/proc/meminfo', 'utf8').match(/HugePages_Free:\\s+(\\d+)/)[1];
        let rounds = 0;
        for (; rounds < Number(start) * 3; rounds++) {
          const pool = DmaPool.hugetlb();
          pool.allocate(4096);
          pool.close();
        }
        console.log(JSON.stringify({ rounds, perRound: Number(start) * 3, held: mapped('hugetlb') }));
      `),
      );
      expect(result.rounds).toBe(result.perRound);
      expect(result.held).toBe(0);
    });
  },
);
