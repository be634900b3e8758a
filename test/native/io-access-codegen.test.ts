/**
 * The machine code of every accessor and barrier in native/io_access.h, for
 * the host (x86-64), for arm64 and for 32-bit ARM (armv7-a hard-float, both
 * instruction sets; cross-compiled): the Linux readX/writeX ordering can only
 * be checked in the instructions themselves.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { arch, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { describeIf } from '../support/requirements';

const probe = resolve(__dirname, 'fixtures/io_access_probe.cc');

const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

/** Compiles the probe and returns each function's instructions (mnemonic and operands). */
function disassemble(cxx: string, objdump: string, flags: string[] = []): Map<string, string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'io-codegen-'));
  try {
    const object = join(dir, 'probe.o');
    execFileSync(cxx, ['-std=c++17', '-O2', ...flags, '-c', probe, '-o', object]);
    const text = execFileSync(objdump, ['-d', '--no-show-raw-insn', object], { encoding: 'utf8' });
    const functions = new Map<string, string[]>();
    let current: string[] | undefined;
    for (const line of text.split('\n')) {
      const header = /^[0-9a-f]+ <(probe_\w+)>:$/.exec(line);
      if (header) {
        current = [];
        functions.set(header[1], current);
      } else if (current && /^\s+[0-9a-f]+:\s/.test(line)) {
        current.push(
          line
            .replace(/^\s+[0-9a-f]+:\s+/, '')
            .replace(/\s+/g, ' ')
            .trim(),
        );
      }
    }
    return functions;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Index of the first instruction matching `pattern`, or -1. */
const at = (code: string[], pattern: RegExp): number => code.findIndex((i) => pattern.test(i));

function x86Suite(): void {
  const code = disassemble('g++', 'objdump');

  it.each([
    ['probe_mb', /^mfence/],
    ['probe_rmb', /^lfence/],
    ['probe_wmb', /^sfence/],
  ])('%s is a fence (%s)', (fn, pattern) => {
    expect(at(code.get(fn)!, pattern)).toBeGreaterThanOrEqual(0);
  });

  it.each(['probe_dma_rmb', 'probe_dma_wmb', 'probe_read32', 'probe_write32'])(
    '%s has no fence (x86 is ordered; compiler barrier only)',
    (fn) => {
      expect(code.get(fn)!.some((i) => /fence/.test(i))).toBe(false);
    },
  );

  it.each([
    ['probe_read8', /^movzbl \(%rdi\)/],
    ['probe_read16', /^movzwl \(%rdi\)/],
    ['probe_read32', /^mov \(%rdi\),%eax/],
    ['probe_write8', /^mov %sil,\(%rdi\)/],
    ['probe_write16', /^mov %si,\(%rdi\)/],
    ['probe_write32', /^mov %esi,\(%rdi\)/],
  ])('%s is one access of the right width', (fn, pattern) => {
    expect(at(code.get(fn)!, pattern)).toBeGreaterThanOrEqual(0);
  });
}

// The x86-64 half describes the host, so it runs only where the host is x86-64.
if (arch() === 'x64') describeIf(has('g++') && has('objdump'), 'needs g++ and objdump', 'x86-64 code', x86Suite);
else describe.skip('x86-64 code (the host is not x86-64)', x86Suite);

describeIf(
  has('aarch64-linux-gnu-g++') && has('aarch64-linux-gnu-objdump'),
  'needs g++-aarch64-linux-gnu (apt)',
  'arm64 code',
  () => {
    const code = disassemble('aarch64-linux-gnu-g++', 'aarch64-linux-gnu-objdump');

    it.each([
      ['probe_read8', /^ldrb w0, \[x0\]$/],
      ['probe_read16', /^ldrh w0, \[x0\]$/],
      ['probe_read32', /^ldr w0, \[x0\]$/],
    ])('%s: a plain load without writeback, then dmb oshld', (fn, load) => {
      const body = code.get(fn)!;
      const l = at(body, load);
      expect(l).toBeGreaterThanOrEqual(0);
      expect(body[l + 1]).toBe('dmb oshld');
    });

    it.each([
      ['probe_write8', /^strb w1, \[x0\]$/],
      ['probe_write16', /^strh w1, \[x0\]$/],
      ['probe_write32', /^str w1, \[x0\]$/],
    ])('%s: dmb oshst, then a plain store without writeback', (fn, store) => {
      const body = code.get(fn)!;
      const s = at(body, store);
      expect(s).toBeGreaterThan(0);
      expect(body.slice(0, s)).toContain('dmb oshst');
    });

    it.each([
      ['probe_mb', 'dsb sy'],
      ['probe_rmb', 'dsb ld'],
      ['probe_wmb', 'dsb st'],
      ['probe_dma_rmb', 'dmb oshld'],
      ['probe_dma_wmb', 'dmb oshst'],
    ])('%s is %s, as in Linux', (fn, insn) => {
      expect(code.get(fn)!).toContain(insn);
    });
  },
);

// 32-bit ARM (armhf). Node's build adds no -marm/-mthumb, so the addon comes
// out in the toolchain's default instruction set (Debian: Thumb-2; others:
// ARM): both are checked. Linux arm: readX is the load then rmb() (dsb);
// writeX is wmb() (dsb st) then the store.
describeIf(
  has('arm-linux-gnueabihf-g++') && has('arm-linux-gnueabihf-objdump'),
  'needs g++-arm-linux-gnueabihf (apt)',
  'armv7 hard-float code',
  () => {
    describe.each([
      ['Thumb-2', '-mthumb'],
      ['ARM', '-marm'],
    ])('%s', (_set, mode) => {
      const code = disassemble('arm-linux-gnueabihf-g++', 'arm-linux-gnueabihf-objdump', [
        '-march=armv7-a+fp',
        '-mfloat-abi=hard',
        mode,
      ]);

      // objdump shows a Thumb [r0] as [r0, #0]; neither form writes back.
      it.each([
        ['probe_read8', /^ldrb r0, \[r0(, #0)?\]$/],
        ['probe_read16', /^ldrh r0, \[r0(, #0)?\]$/],
        ['probe_read32', /^ldr r0, \[r0(, #0)?\]$/],
      ])('%s: a plain load without writeback, then dsb sy', (fn, load) => {
        const body = code.get(fn)!;
        const l = at(body, load);
        expect(l).toBeGreaterThanOrEqual(0);
        // The first barrier after the load is dsb sy; before it, at most the
        // zero-extension of the loaded value (registers only, no access).
        const after = body.slice(l + 1);
        const b = at(after, /^(dsb|dmb|isb)\b/);
        expect(after[b]).toBe('dsb sy');
        expect(after.slice(0, b).filter((i) => !/^uxt[bh] r0, r0$/.test(i))).toEqual([]);
      });

      it.each([
        ['probe_write8', /^strb r1, \[r0(, #0)?\]$/],
        ['probe_write16', /^strh r1, \[r0(, #0)?\]$/],
        ['probe_write32', /^str r1, \[r0(, #0)?\]$/],
      ])('%s: dsb st, then a plain store without writeback', (fn, store) => {
        const body = code.get(fn)!;
        const s = at(body, store);
        expect(s).toBeGreaterThan(0);
        expect(body[s - 1]).toBe('dsb st');
      });

      it.each([
        ['probe_mb', 'dsb sy'],
        ['probe_rmb', 'dsb sy'],
        ['probe_wmb', 'dsb st'],
        ['probe_dma_rmb', 'dmb osh'],
        ['probe_dma_wmb', 'dmb oshst'],
      ])('%s is %s, as in Linux', (fn, insn) => {
        expect(code.get(fn)!).toContain(insn);
      });
    });
  },
);
