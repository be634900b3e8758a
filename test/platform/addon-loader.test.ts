/**
 * How lib/platform/addon.ts finds the addon: a build from source
 * (build/Release/virtio_mmio.node, by name) first, then the prebuild
 * node-gyp-build picks from prebuilds/<platform>-<arch>/; when neither is
 * there, a VirtioError that says what was looked for and how to build it.
 * The packed package itself is tested in test/build/prebuilds.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { VirtioError } from '../../lib/errors';
import {
  ADDON_LOAD_FAILED,
  ADDON_NOT_FOUND,
  addonPackageRoot,
  addonPath,
  loadAddon,
  locateAddon,
} from '../../lib/platform/addon';

const root = resolve(__dirname, '../..');
const tuple = `${process.platform}-${process.arch}`;

/** The prebuild names scripts/build/prebuilds.sh writes (prebuildify's). */
const PREBUILDS = [
  'linux-x64/node.napi.glibc.node',
  'linux-arm64/node.napi.armv8.glibc.node',
  'linux-arm/node.napi.armv7.glibc.node',
];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'addon-loader-'));
  writeFileSync(join(dir, 'package.json'), '{ "name": "virtio-mmio" }\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Empty files at paths under the temporary package. */
function touch(...files: string[]): void {
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), '');
  }
}

function thrown(fn: () => unknown): VirtioError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VirtioError);
    return err as VirtioError;
  }
  throw new Error('did not throw');
}

describe('the addon loader', () => {
  it('finds the package root above lib/platform/ (dist/platform/ once built)', () => {
    expect(addonPackageRoot(join(root, 'lib', 'platform'))).toBe(root);
  });

  it('loaded the checkout build, build/Release/virtio_mmio.node', () => {
    expect(addonPath).toBe(join(root, 'build', 'Release', 'virtio_mmio.node'));
  });

  it('takes build/Release/virtio_mmio.node by name, over the bench addon and over a prebuild', () => {
    touch('build/Release/a_bench.node', 'build/Release/virtio_mmio.node', `prebuilds/${tuple}/node.napi.node`);
    expect(locateAddon(dir)).toBe(join(dir, 'build', 'Release', 'virtio_mmio.node'));
  });

  it('takes the prebuild for this platform and arch when there is no build', () => {
    touch(`prebuilds/${tuple}/node.napi.node`, 'prebuilds/linux-nosucharch/node.napi.node');
    expect(locateAddon(dir)).toBe(join(dir, 'prebuilds', tuple, 'node.napi.node'));
  });

  it('does not take another addon left in build/Release', () => {
    touch('build/Release/virtio_mmio_bench.node');
    expect(thrown(() => locateAddon(dir)).code).toBe(ADDON_NOT_FOUND);
  });

  it('says what it looked for, what the package has and how to build from source when nothing matches', () => {
    touch('prebuilds/linux-nosucharch/node.napi.glibc.node');
    const err = thrown(() => locateAddon(dir));
    expect(err.code).toBe(ADDON_NOT_FOUND);
    expect(err.message).toContain(join(dir, 'build', 'Release', 'virtio_mmio.node'));
    expect(err.message).toContain(join(dir, 'prebuilds', tuple, 'node.napi.'));
    expect(err.message).toContain('linux-nosucharch/node.napi.glibc.node');
    expect(err.message).toContain('match none of this platform, arch and libc');
    expect(err.message).toContain('apt-get install g++ make python3');
    expect(err.message).toContain('npm rebuild virtio-mmio');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('says the package has no prebuilds when it has none', () => {
    expect(thrown(() => locateAddon(dir)).message).toContain('the package has no prebuilds');
  });

  it('turns a prebuild that will not load into ERR_VIRTIO_ADDON_LOAD, with the file, the cause and the way out', () => {
    touch(`prebuilds/${tuple}/node.napi.node`);
    const err = thrown(() => loadAddon(dir));
    expect(err.code).toBe(ADDON_LOAD_FAILED);
    expect(err.message).toContain(`the prebuild ${join(dir, 'prebuilds', tuple, 'node.napi.node')} does not load here`);
    expect(err.message).toContain('npm rebuild virtio-mmio --build-from-source');
    // dlopen's own words (from Node's realm, not jest's: no instanceof).
    const cause = (err.cause as Error).message;
    expect(cause).toMatch(/\S/);
    expect(err.message).toContain(cause);
  });
});

/**
 * node-gyp-build reads the machine (arch, ARM_VERSION, LIBC) once, when it is
 * first required, so each machine is a child process with its overrides.
 */
describe('node-gyp-build picks the prebuild named for the machine', () => {
  function pick(env: Record<string, string>): string {
    touch(...PREBUILDS.map((file) => `prebuilds/${file}`));
    const child = spawnSync(
      process.execPath,
      ['-e', `try { console.log(require('node-gyp-build').path(process.argv[1])) } catch { console.log('none') }`, dir],
      { cwd: root, encoding: 'utf8', env: { ...process.env, ARM_VERSION: '', LIBC: '', npm_config_arch: '', ...env } },
    );
    expect(child.stderr).toBe('');
    const found = child.stdout.trim();
    return found === 'none' ? found : found.slice(dir.length + 1);
  }

  it.each([
    [{ npm_config_arch: 'x64' }, 'prebuilds/linux-x64/node.napi.glibc.node'],
    [{ npm_config_arch: 'arm64' }, 'prebuilds/linux-arm64/node.napi.armv8.glibc.node'],
    [{ npm_config_arch: 'arm', ARM_VERSION: '7' }, 'prebuilds/linux-arm/node.napi.armv7.glibc.node'],
    // armv6 (Raspberry Pi 1 and Zero) would fault on ARMv7 code; an unknown ARM version is not assumed 7.
    [{ npm_config_arch: 'arm', ARM_VERSION: '6' }, 'none'],
    [{ npm_config_arch: 'arm' }, 'none'],
    // musl (Alpine): the prebuilds link against glibc.
    [{ npm_config_arch: 'x64', LIBC: 'musl' }, 'none'],
    [{ npm_config_arch: 'arm64', LIBC: 'musl' }, 'none'],
    [{ npm_config_arch: 'riscv64' }, 'none'],
  ])('%j: %s', (env, expected) => {
    if (process.platform !== 'linux') return;
    expect(pick(env)).toBe(expected);
  });
});
