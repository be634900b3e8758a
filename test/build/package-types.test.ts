/**
 * The package as `npm pack` ships it, seen by a TypeScript consumer: every
 * entry (`virtio-mmio`, `virtio-mmio/spec`, `virtio-mmio/diag`, `virtio-mmio/sim`) resolves with their types under
 * every moduleResolution (node10 through typesVersions, node16/nodenext and
 * bundler through exports), and every source map in it carries its sources
 * (the maps point at lib/*.ts, which the package does not hold).
 *
 * Packs the checkout's dist/ as it is (`npm pack --ignore-scripts`: `npm ci`
 * or `npm run build:ts` built it) into a temporary directory; the checkout
 * is not touched.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(__dirname, '../..');

const CONSUMER = `
import { DmaPool, MmioTransport, VirtioBlk, invalidArgType, type BlkInfo } from 'virtio-mmio';
import { BlkModel, SimDevice, type SimDeviceModel } from 'virtio-mmio/sim';
import { BlkFeature, MmioRegister } from 'virtio-mmio/spec';
import { inspect, type InspectReport } from 'virtio-mmio/diag';

export async function firstSector(): Promise<Buffer> {
  using memory = DmaPool.anonymous();
  using sim = new SimDevice({ memory, model: new BlkModel() });
  using blk = VirtioBlk.open(new MmioTransport(sim, { interrupts: sim.interrupt }), { memory });
  const info: BlkInfo = blk.info;
  const model: SimDeviceModel = new BlkModel();
  if (info.blockSize !== 512 || model.deviceId !== 2) throw invalidArgType('unexpected');
  const report: InspectReport = inspect(sim);
  if (report.version !== 2 || MmioRegister.Config !== 0x100 || BlkFeature.FLUSH !== 9) throw invalidArgType('unexpected');
  return blk.read(0, 512);
}
`;

let dir: string;
let files: string[];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'package-types-'));
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  expect(pack.status).toBe(0);
  const [{ filename, files: listed }] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  files = listed.map((f) => f.path);
  const installed = join(dir, 'consumer/node_modules/virtio-mmio');
  mkdirSync(installed, { recursive: true });
  const untar = spawnSync('tar', ['xzf', join(dir, filename), '-C', installed, '--strip-components=1'], { encoding: 'utf8' });
  expect(untar.status).toBe(0);
  writeFileSync(join(dir, 'consumer/package.json'), JSON.stringify({ name: 'consumer', private: true }));
  writeFileSync(join(dir, 'consumer/index.ts'), CONSUMER);
}, 180_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.each([
  ['node10', ts.ModuleKind.CommonJS, ts.ModuleResolutionKind.Node10],
  ['node16', ts.ModuleKind.Node16, ts.ModuleResolutionKind.Node16],
  ['nodenext', ts.ModuleKind.NodeNext, ts.ModuleResolutionKind.NodeNext],
  ['bundler', ts.ModuleKind.ESNext, ts.ModuleResolutionKind.Bundler],
])('every entry type-checks under moduleResolution %s', (_, module, moduleResolution) => {
  const program = ts.createProgram([join(dir, 'consumer/index.ts')], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module,
    moduleResolution,
    types: ['node'],
    typeRoots: [join(root, 'node_modules/@types')],
    skipLibCheck: true,
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  expect(problems).toEqual([]);
  // Resolved from the installed package, not from the checkout's sources.
  const declarations = program.getSourceFiles().map((f) => f.fileName).filter((f) => f.includes('node_modules/virtio-mmio/'));
  expect(declarations).toEqual(expect.arrayContaining([expect.stringMatching(/virtio-mmio\/dist\/index\.d\.ts$/), expect.stringMatching(/virtio-mmio\/dist\/sim\/index\.d\.ts$/), expect.stringMatching(/virtio-mmio\/dist\/spec\/index\.d\.ts$/), expect.stringMatching(/virtio-mmio\/dist\/diag\/index\.d\.ts$/)]));
});

test('every source map in the package embeds the sources it maps', () => {
  const maps = files.filter((f) => f.endsWith('.map'));
  expect(maps.length).toBeGreaterThan(50);
  expect(files.some((f) => f.startsWith('lib/'))).toBe(false);
  const bare = maps.filter((f) => {
    const map = JSON.parse(readFileSync(join(dir, 'consumer/node_modules/virtio-mmio', f), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
    return map.sourcesContent?.length !== map.sources.length || map.sourcesContent.some((s) => typeof s !== 'string' || s.length === 0);
  });
  expect(bare).toEqual([]);
});
