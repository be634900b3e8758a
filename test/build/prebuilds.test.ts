/**
 * The package installs without a compiler: scripts/build/prebuilds.sh builds
 * the linux-x64 addon and cross-builds the linux-arm64 and linux-arm (armv7,
 * hard-float) ones, `npm pack` ships exactly these three, and the tarball
 * installed into a fresh app with `npm install --ignore-scripts` (nothing can
 * be built) loads its addon from prebuilds/linux-x64. Then the install script
 * (node-gyp-build): with a matching prebuild it builds nothing; with none (a
 * musl machine, as LIBC=musl makes it) it builds from source as before; and
 * `npm rebuild virtio-mmio --build-from-source`, what the loader's error
 * tells people to run, builds from source too.
 *
 * Slow (three builds, a pack, three installs, two builds in the installed
 * package: minutes on two cores), and all of it in a temporary directory: the
 * checkout's build/, dist/ and prebuilds/ are not touched. Skipped, with the
 * reason, when a cross compiler is missing outside CI; in CI (process.env.CI)
 * it runs and fails instead.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../..');
const PREBUILDS = [
  'prebuilds/linux-arm/node.napi.armv7.glibc.node',
  'prebuilds/linux-arm64/node.napi.armv8.glibc.node',
  'prebuilds/linux-x64/node.napi.glibc.node',
];
const X64_PREBUILD = 'prebuilds/linux-x64/node.napi.glibc.node';

const onPath = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const missing = ['aarch64-linux-gnu-g++', 'arm-linux-gnueabihf-g++', 'readelf'].filter((tool) => !onPath(tool));
const inCi = Boolean(process.env.CI);
const hostFits = process.platform === 'linux' && process.arch === 'x64';
const skipReason = !hostFits
  ? `the host is ${process.platform}-${process.arch}, not linux-x64`
  : missing.length > 0 && !inCi
    ? `no ${missing.join(', ')} (apt-get install g++-aarch64-linux-gnu g++-arm-linux-gnueabihf binutils: host packages, never :arm64/:armhf)`
    : '';
const suite = skipReason ? describe.skip : describe;
if (skipReason) console.warn(`test/build/prebuilds.test.ts skipped: ${skipReason}`);

/**
 * The environment for npm and node children: none of the npm_* that `npm test`
 * hands its scripts (package, lifecycle, local prefix, an --arch), and no
 * node-gyp-build overrides, but npm's nodedir, cache and configuration files.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = /^npm_config_(nodedir|cache|userconfig|globalconfig|cafile|registry|proxy|https_proxy|noproxy)$/;
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !keep.test(key)) continue;
    if (['INIT_CWD', 'LIBC', 'ARM_VERSION', 'VIRTIO_MMIO_PREBUILD', 'PREBUILDS_ONLY'].includes(key)) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs a command; on failure, throws with its output. */
function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv()): string {
  const child = spawnSync(file, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (child.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} (in ${cwd}) exited ${child.status ?? child.signal}:\n${child.stdout}\n${child.stderr}`);
  }
  return child.stdout + child.stderr;
}

/** A fresh app with the tarball installed. */
function installApp(dir: string, tarball: string, npmArgs: string[], env?: NodeJS.ProcessEnv): string {
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), '{ "name": "app", "version": "1.0.0", "private": true }\n');
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', ...npmArgs, tarball], dir, env);
  return join(dir, 'node_modules', 'virtio-mmio');
}

interface Probe {
  ok: boolean;
  code?: string;
  message?: string;
  /** The .node files this process has mapped (/proc/self/maps), whoever loaded them. */
  mapped: string[];
  barriers?: boolean;
}

/** require('virtio-mmio') in a process of its own in `app`; which addon got mapped. */
function probe(app: string, env: Record<string, string> = {}): Probe {
  const script = `
    const fs = require('node:fs');
    const mapped = () => [...new Set(fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')
      .map((line) => line.split(/\\s+/).slice(5).join(' ')).filter((file) => file.endsWith('.node')))];
    try {
      const v = require('virtio-mmio');
      v.nativeBarriers.mb();
      v.nativeBarriers.dmaWmb();
      console.log(JSON.stringify({ ok: true, mapped: mapped(), barriers: typeof v.MmioWindow === 'function' }));
    } catch (err) {
      console.log(JSON.stringify({ ok: false, code: err.code, message: err.message, mapped: mapped() }));
    }`;
  return JSON.parse(run(process.execPath, ['-e', script], app, cleanEnv(env)).trim()) as Probe;
}

suite(`the npm package with prebuilds${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let work: string;
  let tarball: string;
  let entries: { path: string; size: number }[];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'prebuilds-test-'));
    const pkg = join(work, 'pkg');
    mkdirSync(pkg);
    // The working tree without what is built, installed or cached (as scripts/build/check-cmake-addon.sh copies it).
    run(
      'bash',
      [
        '-c',
        `tar -C "$1" --anchored --exclude=./.git --exclude=./node_modules --exclude=./build --exclude='./build-*' ` +
          `--exclude=./dist --exclude=./coverage --exclude=./.lab-cache --exclude=./prebuilds --exclude='./*.tgz' -cf - . ` +
          `| tar -C "$2" -xf -`,
        'copy',
        root,
        pkg,
      ],
      root,
    );
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'));

    process.stdout.write(run('bash', ['scripts/build/prebuilds.sh'], pkg));
    run('npm', ['pack', '--pack-destination', work], pkg);
    const tgz = readdirSync(work).filter((file) => file.endsWith('.tgz'));
    expect(tgz).toHaveLength(1);
    tarball = join(work, tgz[0]);
    // `tar -tvzf`: mode owner size date time path
    entries = run('tar', ['-tvzf', tarball], work)
      .trim()
      .split('\n')
      .map((line) => {
        const fields = line.trim().split(/\s+/);
        return { path: fields.slice(5).join(' '), size: Number(fields[2]) };
      });
    const unpacked = entries.reduce((sum, entry) => sum + entry.size, 0);
    console.log(
      `${tgz[0]}: package size ${statSync(tarball).size} B, unpacked size ${unpacked} B, ${entries.filter((e) => !e.path.endsWith('/')).length} files`,
    );
  }, 30 * 60_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships exactly the three prebuilds, and no build/', () => {
    const addons = entries.map((entry) => entry.path).filter((path) => path.endsWith('.node'));
    expect(addons.sort()).toEqual(PREBUILDS.map((file) => `package/${file}`));
    expect(entries.filter((entry) => entry.path.startsWith('package/build/'))).toEqual([]);
    // What a build from source needs is still there.
    for (const file of ['binding.gyp', 'native/addon.cc', 'dist/index.js', 'package.json']) {
      expect(entries.map((entry) => entry.path)).toContain(`package/${file}`);
    }
  });

  it('installs with --ignore-scripts (nothing built) and loads the addon from prebuilds/linux-x64', () => {
    const installed = installApp(join(work, 'app-ignore-scripts'), tarball, ['--ignore-scripts']);
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const result = probe(join(work, 'app-ignore-scripts'));
    expect(result).toMatchObject({ ok: true, barriers: true });
    expect(result.mapped.filter((file) => file.includes('virtio'))).toEqual([join(installed, X64_PREBUILD)]);
  }, 5 * 60_000);

  it('with no prebuild for the machine (LIBC=musl) and no build, says what was looked for and what to do', () => {
    const result = probe(join(work, 'app-ignore-scripts'), { LIBC: 'musl' });
    expect(result.ok).toBe(false);
    expect(result.code).toBe('ERR_VIRTIO_ADDON_NOT_FOUND');
    expect(result.message).toContain('(linux-x64, musl)');
    expect(result.message).toContain('prebuilds/linux-x64/node.napi.musl.node');
    expect(result.message).toContain('linux-x64/node.napi.glibc.node');
    expect(result.message).toContain('apt-get install g++ make python3');
    expect(result.message).toContain('npm rebuild virtio-mmio --build-from-source');
    expect(result.mapped.filter((file) => file.includes('virtio'))).toEqual([]);
  });

  it('`npm rebuild virtio-mmio --build-from-source` builds from source, and the build is what loads', () => {
    const app = join(work, 'app-ignore-scripts');
    run('npm', ['rebuild', 'virtio-mmio', '--build-from-source', '--foreground-scripts'], app);
    const installed = join(app, 'node_modules', 'virtio-mmio');
    expect(readdirSync(join(installed, 'build', 'Release')).filter((file) => file.endsWith('.node'))).toEqual(['virtio_mmio.node']);
    const result = probe(app);
    expect(result).toMatchObject({ ok: true });
    expect(result.mapped.filter((file) => file.includes('virtio'))).toEqual([join(installed, 'build', 'Release', 'virtio_mmio.node')]);
  }, 10 * 60_000);

  it('the install script builds nothing when a prebuild matches', () => {
    const app = join(work, 'app-scripts');
    const installed = installApp(app, tarball, []);
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const result = probe(app);
    expect(result).toMatchObject({ ok: true });
    expect(result.mapped.filter((file) => file.includes('virtio'))).toEqual([join(installed, X64_PREBUILD)]);
  }, 5 * 60_000);

  it('the install script builds from source when no prebuild matches (LIBC=musl), as before', () => {
    const app = join(work, 'app-musl');
    const installed = installApp(app, tarball, [], cleanEnv({ LIBC: 'musl' }));
    expect(existsSync(join(installed, 'build', 'Release', 'virtio_mmio.node'))).toBe(true);
    const result = probe(app, { LIBC: 'musl' });
    expect(result).toMatchObject({ ok: true });
    expect(result.mapped.filter((file) => file.includes('virtio'))).toEqual([join(installed, 'build', 'Release', 'virtio_mmio.node')]);
  }, 10 * 60_000);
});
