/**
 * The README's board guide ("## On a board") against what it describes:
 * its device-tree node against the device tree QEMU's virt machine (the
 * lab's board) generates, read with a small flattened-device-tree reader;
 * the CLI commands and options it names against the CLI's usage; the
 * snippets it copies from the library's hints against those hints; and its
 * hugepage claims against the addon's source.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { USAGE } from '../../lib/cli/main';
import { NO_UIO_HINT } from '../../lib/cli/targets';
import { syscallHint } from '../../lib/platform/syscall-hints';
import { describeIf } from '../support/requirements';

const root = resolve(__dirname, '../..');

/** The "## On a board" section of README.md, up to the next level-2 heading. */
function boardGuide(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## On a board\n');
  expect(start).toBeGreaterThan(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

// ---- a minimal FDT reader (devicetree spec §5: header, structure block, strings block) ----

interface FdtNode {
  name: string;
  props: Map<string, Buffer>;
  children: FdtNode[];
}

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_NOP = 4;
const FDT_END = 9;

export function parseFdt(blob: Buffer): FdtNode {
  if (blob.readUInt32BE(0) !== FDT_MAGIC) throw new Error('not a flattened device tree (bad magic)');
  const structOff = blob.readUInt32BE(8);
  const stringsOff = blob.readUInt32BE(12);
  const stringAt = (off: number): string => {
    const at = stringsOff + off;
    return blob.toString('latin1', at, blob.indexOf(0, at));
  };
  const align4 = (n: number): number => (n + 3) & ~3;
  let at = structOff;
  const stack: FdtNode[] = [];
  let top: FdtNode | undefined;
  for (;;) {
    const token = blob.readUInt32BE(at);
    at += 4;
    if (token === FDT_BEGIN_NODE) {
      const nul = blob.indexOf(0, at);
      const node: FdtNode = { name: blob.toString('latin1', at, nul), props: new Map(), children: [] };
      at = align4(nul + 1);
      if (stack.length > 0) stack[stack.length - 1].children.push(node);
      else top = node;
      stack.push(node);
    } else if (token === FDT_END_NODE) {
      stack.pop();
    } else if (token === FDT_PROP) {
      const len = blob.readUInt32BE(at);
      const nameOff = blob.readUInt32BE(at + 4);
      at += 8;
      stack[stack.length - 1].props.set(stringAt(nameOff), blob.subarray(at, at + len));
      at = align4(at + len);
    } else if (token === FDT_NOP) {
      continue;
    } else if (token === FDT_END) {
      break;
    } else {
      throw new Error(`bad FDT token ${token} at ${at - 4}`);
    }
  }
  if (!top) throw new Error('empty device tree');
  return top;
}

const cells = (value: Buffer): number[] =>
  Array.from({ length: value.length / 4 }, (_, i) => value.readUInt32BE(4 * i));

// ---- the guide's device-tree node, read from its dts blocks ----

interface DtsNode {
  name: string;
  compatible: string;
  reg: number[];
  interrupts: number[];
  flags: string[];
}

/** Every node in the guide's ```dts blocks that has a compatible (a node of one level, as the guide writes them). */
function guideNodes(guide: string): DtsNode[] {
  const blocks = [...guide.matchAll(/```dts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const nodes: DtsNode[] = [];
  for (const block of blocks) {
    for (const m of block.matchAll(/([\w,.-]+@[0-9a-f]+)\s*\{([^{}]*)\}/g)) {
      const body = m[2];
      const compatible = /compatible\s*=\s*"([^"]*)"/.exec(body)?.[1];
      if (compatible === undefined) continue;
      const list = (prop: string): number[] => {
        const text = new RegExp(`\\b${prop}\\s*=\\s*<([^>]*)>`).exec(body)?.[1];
        if (text === undefined) throw new Error(`${m[1]} has no ${prop}`);
        return text
          .trim()
          .split(/\s+/)
          .map((t) => Number(t));
      };
      const flags = [...body.matchAll(/^\s*([\w,-]+)\s*;/gm)].map((f) => f[1]);
      nodes.push({ name: m[1], compatible, reg: list('reg'), interrupts: list('interrupts'), flags });
    }
  }
  return nodes;
}

// ---- tests ----

const qemu = spawnSync('qemu-system-aarch64', ['--version'], { encoding: 'utf8' });
const haveQemu = qemu.status === 0;

describeIf(
  haveQemu,
  'qemu-system-aarch64 is not installed (npm run lab:prepare installs it)',
  "the guide's device-tree node is QEMU virt's",
  () => {
    let tree: FdtNode;

    beforeAll(() => {
      const dir = mkdtempSync(join(tmpdir(), 'virt-dtb-'));
      try {
        const dtb = join(dir, 'virt.dtb');
        // The lab's machine (scripts/lab/run.js): the same -M, -cpu, -m and -smp.
        execFileSync(
          'qemu-system-aarch64',
          [
            '-M',
            `virt,dumpdtb=${dtb}`,
            '-cpu',
            'cortex-a72',
            '-m',
            '2048',
            '-smp',
            '2',
            '-nic',
            'none',
            '-display',
            'none',
          ],
          { stdio: 'pipe', timeout: 30_000 },
        );
        tree = parseFdt(readFileSync(dtb));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test('every guide node matches the node QEMU generates at the same address, property by property', () => {
      const nodes = guideNodes(boardGuide());
      // The plain node and the two overlay forms.
      expect(nodes.length).toBeGreaterThanOrEqual(3);
      const transports = tree.children.filter((n) => n.name.startsWith('virtio_mmio@'));
      expect(transports).toHaveLength(32);
      const addressCells = tree.props.get('#address-cells')!.readUInt32BE(0);
      const sizeCells = tree.props.get('#size-cells')!.readUInt32BE(0);
      for (const node of nodes) {
        const unit = node.name.split('@')[1];
        const qemuNode = transports.find((n) => n.name.split('@')[1] === unit);
        expect(qemuNode).toBeDefined();
        const props = qemuNode!.props;
        expect(node.compatible).toBe(props.get('compatible')!.toString('latin1').replace(/\0$/, ''));
        // reg in the root's cells, as the guide says (2 and 2 on -M virt).
        expect(node.reg).toHaveLength(addressCells + sizeCells);
        expect(node.reg).toEqual(cells(props.get('reg')!));
        expect(node.interrupts).toEqual(cells(props.get('interrupts')!));
        // Every property QEMU sets is in the guide's node, and nothing else.
        const named = ['compatible', 'reg', 'interrupts', ...node.flags].sort();
        expect(named).toEqual([...props.keys()].sort());
      }
    });

    test("the guide's interrupt numbers: GIC SPI 47 = interrupt ID 79, edge rising; the root names the parent", () => {
      const guide = boardGuide();
      const node = guideNodes(guide)[0];
      const [type, spi, flags] = node.interrupts;
      expect(type).toBe(0); // SPI
      expect(flags).toBe(1); // IRQ_TYPE_EDGE_RISING
      expect(guide).toContain(`SPI ${spi} (interrupt ID ${spi + 32})`);
      expect(tree.props.has('interrupt-parent')).toBe(true);
      // QEMU's tree has no labels, which is why the guide's overlay uses &{/}.
      expect(tree.children.some((n) => n.name === '__symbols__')).toBe(false);
    });
  },
);

describe("the guide's commands and snippets match the library", () => {
  test('every virtio-mmio command the guide runs, and each of its options, is in the CLI usage', () => {
    const uses = [...boardGuide().matchAll(/virtio-mmio (scan|inspect|selftest|dump|rng|blk)\b([^`\n]*)/g)];
    expect(uses.length).toBeGreaterThanOrEqual(3);
    for (const [, command, rest] of uses) {
      expect(USAGE).toMatch(new RegExp(`^  ${command} `, 'm'));
      for (const option of rest.match(/--[a-z-]+/g) ?? []) {
        const line = USAGE.split('\n').find((l) => l.startsWith(`  ${command} `))!;
        expect(`${command}: ${line}`).toContain(option);
      }
    }
  });

  test('the udev rule and the modprobe parameter are the ones the library advises', () => {
    const guide = boardGuide();
    const rule = /SUBSYSTEM=="uio", GROUP="uio", MODE="0660"/;
    expect(guide).toMatch(rule);
    expect(syscallHint({ code: 'EACCES', syscall: 'open', path: '/dev/uio0' })).toMatch(rule);
    expect(guide).toContain('options uio_pdrv_genirq of_id=virtio,mmio');
    expect(NO_UIO_HINT).toContain('uio_pdrv_genirq of_id=virtio,mmio');
    expect(syscallHint({ code: 'EPERM', syscall: 'read', path: '/proc/self/pagemap' })).toContain('CAP_SYS_ADMIN');
    expect(syscallHint({ code: 'EPERM', syscall: 'open', path: '/dev/mem' })).toContain('CAP_SYS_RAWIO');
  });

  test('hugepages: the addon maps the default size only (what the guide says about 64 KiB-page kernels)', () => {
    const source = readFileSync(join(root, 'native/dma_memory.cc'), 'utf8');
    expect(boardGuide()).toContain('`DmaPool.hugetlb()` maps hugepages of the **default size**');
    // The size comes from /proc/meminfo's Hugepagesize, and mmap asks for no other (no MAP_HUGE_2MB etc.).
    expect(source).toContain('Hugepagesize:');
    expect(source).toMatch(/MAP_HUGETLB \| MAP_LOCKED \| MAP_POPULATE/);
    expect(source).not.toMatch(/MAP_HUGE_(SHIFT|\d)/);
    // The 2 MiB chunk the guide names.
    expect(readFileSync(join(root, 'lib/platform/dma-pool.ts'), 'utf8')).toMatch(
      /static hugetlb\(chunkSize = 2 \* 1024 \* 1024\)/,
    );
  });

  test('the armhf line names the prebuild the package ships and the lab block that proves it', () => {
    const guide = boardGuide();
    expect(guide).toMatch(/\*\*armhf \(armv7-a hard-float\)\*\*: prebuild shipped/);
    const prebuild = /`prebuilds\/(linux-arm\/node\.napi\.armv7\.glibc\.node)`/.exec(guide);
    expect(prebuild).not.toBeNull();
    expect(readFileSync(join(root, 'scripts/build/prebuilds.sh'), 'utf8')).toContain(prebuild![1]);
    const lab = readFileSync(join(root, 'test/lab/lab.test.ts'), 'utf8');
    expect(lab).toContain(prebuild![1]);
    expect(lab).toMatch(/describeIf\(armhfLab\.ok, armhfLab\.reason, 'the QEMU armhf lab/);
    expect(lab).toMatch(/above4GiB: true/);
    expect(guide).not.toMatch(/TODO/);
  });
});
