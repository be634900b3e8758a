'use strict';
// Boots the lab guest with a list of QEMU devices and runs one shell command
// in it (from /opt/virtio-mmio, the compiled library). Streams the console,
// returns the command's exit status and the result lines it printed, kills
// QEMU after a timeout, and never leaves a QEMU process behind (also on
// Ctrl-C or when the calling process exits). Three guests (prepare.sh --arch):
// arm64 (the default), armhf (32-bit, LPAE) and amd64 (an x86-64 microvm
// without UIO); LAB_ARCH picks the default.
//
//   node scripts/lab/run.js [--arch arm64|armhf|amd64 [--above-4gib]] [--legacy] [--device SPEC]... [--qemu ARG]...
// [--backport] [--netns NAME] [--timeout S] -- COMMAND...
//
// As a module: runLab({ arch, above4GiB, backport, netns, devices, legacy, command, timeoutMs, onConsole }).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const ROOT = path.resolve(__dirname, '../..');
const CACHE = process.env.LAB_CACHE || path.join(ROOT, '.lab-cache');
const DEFAULT_ARCH = process.env.LAB_ARCH || 'arm64';
/** The boot side of each guest (prepare.sh's lab-arch.sh has the build side). */
const ARCHES = {
  arm64: {
    qemu: 'qemu-system-aarch64',
    machine: 'virt',
    cpu: 'cortex-a72',
    memoryMb: 2048,
    ready: path.join(CACHE, 'ready'),
    // `backport`: the same guest on QEMU 10.0 from bookworm-backports (prepare.sh
    // unpacks it into ready/qemu), whose virtio devices take in_order=on; -audio
    // none as for armhf above 4 GiB.
    backport: { bundled: 'qemu/qemu-system-aarch64', args: ['-audio', 'none'] },
  },
  // -M virt puts RAM at 0x40000000: 3072 MiB end at 4 GiB. `above4GiB`
  // boots 4096 MiB (to 0x140000000, so the hugepages sit above 4 GiB) with
  // the backports QEMU prepare.sh unpacks into ready-armhf/qemu: 7.2's TCG
  // faults on LPAE page-table walks above 4 GiB. -audio none: no probing of
  // the host's (7.2) audio modules, which 10.0 refuses noisily.
  armhf: {
    qemu: 'qemu-system-arm',
    machine: 'virt,highmem=on',
    cpu: 'cortex-a15',
    memoryMb: 3072,
    ready: path.join(CACHE, 'ready-armhf'),
    above4GiB: { bundled: 'qemu/qemu-system-arm', memoryMb: 4096, args: ['-audio', 'none'] },
  },
  // The Firecracker shape: -M microvm (virtio-mmio only, no ACPI, no device
  // tree) writes a virtio_mmio.device= entry per device onto the kernel
  // command line; the console is the ISA serial port. RAM is 0..1 GiB and
  // mem=768M keeps the kernel off the top 256 MiB, the DMA carve-out
  // (CARVE_OUT). reboot=t: without ACPI the guest ends QEMU by a reboot
  // (init.sh), which -no-reboot turns into an exit. -cpu max: Node's V8
  // wants more than the baseline qemu64 CPU.
  amd64: {
    qemu: 'qemu-system-x86_64',
    machine: 'microvm,acpi=off',
    cpu: 'max',
    memoryMb: 1024,
    ready: path.join(CACHE, 'ready-amd64'),
    append: 'console=ttyS0 quiet panic=-1 reboot=t mem=768M',
  },
};
/** The amd64 guest's memory outside the kernel's map (its mem= to the end of its RAM), for DmaPool.physical. */
const CARVE_OUT = { amd64: { base: 0x3000_0000, size: 0x1000_0000 } };
const READY = ARCHES.arm64.ready;
const RESULT = '@@LAB-RESULT ';
const EXIT = '@@LAB-EXIT ';
const PARTS = ['1-base.cpio.gz', '2-modules.cpio.gz', '3-library.cpio.gz'];

function archOf(arch = DEFAULT_ARCH) {
  const found = ARCHES[arch];
  if (!found) throw new RangeError(`unknown lab arch '${arch}' (${Object.keys(ARCHES).join(', ')})`);
  return found;
}

/** Whether prepare.sh has produced a bootable lab for `arch`. */
function labReady(arch) {
  const { ready, above4GiB } = archOf(arch);
  return ['vmlinuz', ...PARTS, ...(above4GiB ? [above4GiB.bundled] : [])].every((f) =>
    fs.existsSync(path.join(ready, f)),
  );
}

/** One newc cpio archive (the format the kernel unpacks into its initramfs). */
function cpio(entries) {
  const chunks = [];
  let ino = 1;
  const pad4 = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  const header = (name, mode, size) => {
    const fields = [ino++, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, Buffer.byteLength(name) + 1, 0];
    const text = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    const head = Buffer.from(`${text}${name}\0`);
    return Buffer.concat([head, pad4(head.length)]);
  };
  for (const { name, data, mode } of entries) {
    const body = data ?? Buffer.alloc(0);
    chunks.push(header(name, mode, body.length), body, pad4(body.length));
  }
  const trailer = header('TRAILER!!!', 0, 0);
  chunks.push(trailer);
  return Buffer.concat(chunks);
}

const live = new Set();
function killAll() {
  for (const child of live) child.kill('SIGKILL');
}
process.once('exit', killAll);

/**
 * `append`: more words for the kernel command line (e.g. mem=, virtio_mmio.device= entries).
 * `backport`: boot the arch's QEMU 10.0 from bookworm-backports (ARCHES.<arch>.backport) instead of the host's.
 * `netns`: run QEMU inside that network namespace (netns.js makes one), where its tap netdevs are.
 * @param {{ arch?: 'arm64' | 'armhf' | 'amd64', above4GiB?: boolean, backport?: boolean, netns?: string,
 *           devices?: string[], extraArgs?: string[], append?: string[], legacy?: boolean, command: string,
 *           timeoutMs?: number, memoryMb?: number, onConsole?: (line: string) => void }} options
 * @returns {Promise<{ exitCode: number | null, timedOut: boolean, results: object[], console: string, ms: number }>}
 */
function runLab(options) {
  let guest;
  try {
    guest = archOf(options.arch);
  } catch (error) {
    return Promise.reject(error);
  }
  const { ready } = guest;
  if (!labReady(options.arch))
    return Promise.reject(new Error(`the lab is not prepared (${ready}): run npm run lab:prepare`));
  if (options.above4GiB && !guest.above4GiB)
    return Promise.reject(new RangeError(`the ${options.arch ?? DEFAULT_ARCH} lab has no above4GiB boot`));
  if (options.backport && !guest.backport)
    return Promise.reject(new RangeError(`the ${options.arch ?? DEFAULT_ARCH} lab has no backport boot`));
  if (options.backport && !fs.existsSync(path.join(ready, guest.backport.bundled)))
    return Promise.reject(new Error(`the lab has no backports QEMU (${ready}/qemu): run npm run lab:prepare`));
  const high = options.above4GiB ? guest.above4GiB : options.backport ? guest.backport : undefined;
  const qemu = high ? path.join(ready, high.bundled) : guest.qemu;
  const {
    devices = [],
    extraArgs = [],
    append = [],
    legacy = false,
    command,
    timeoutMs = 300_000,
    memoryMb = high?.memoryMb ?? guest.memoryMb,
    onConsole,
  } = options;
  if (typeof command !== 'string' || command === '')
    return Promise.reject(new TypeError('command must be a non-empty string'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-'));
  const initrd = path.join(dir, 'initrd');
  const out = fs.openSync(initrd, 'w');
  for (const part of PARTS) fs.writeSync(out, fs.readFileSync(path.join(ready, part)));
  fs.writeSync(
    out,
    zlib.gzipSync(
      cpio([
        { name: 'lab', mode: 0o40755 },
        { name: 'lab/cmd', mode: 0o100644, data: Buffer.from(`${command}\n`) },
      ]),
      { level: 1 },
    ),
  );
  fs.closeSync(out);

  const args = [
    '-M',
    guest.machine,
    '-cpu',
    guest.cpu,
    '-m',
    String(memoryMb),
    '-smp',
    '2',
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-nic',
    'none',
    '-kernel',
    path.join(ready, 'vmlinuz'),
    '-initrd',
    initrd,
    '-append',
    [guest.append ?? 'console=ttyAMA0 quiet panic=-1', ...append].join(' '),
    ...(legacy ? [] : ['-global', 'virtio-mmio.force-legacy=false']),
    ...(high?.args ?? []),
    ...devices.flatMap((d) => ['-device', d]),
    ...extraArgs,
  ];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // `ip netns exec` enters the namespace and execs QEMU: the child is QEMU itself.
    const [file, argv] = options.netns ? ['ip', ['netns', 'exec', options.netns, qemu, ...args]] : [qemu, args];
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const lines = [];
    const results = [];
    let exitCode = null;
    let timedOut = false;
    let partial = '';
    const onData = (chunk) => {
      partial += chunk.toString('utf8').replace(/\r/g, '');
      let at;
      while ((at = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, at);
        partial = partial.slice(at + 1);
        lines.push(line);
        if (line.startsWith(RESULT)) {
          try {
            results.push(JSON.parse(line.slice(RESULT.length)));
          } catch {
            results.push({ kind: 'unparsed', line });
          }
        } else if (line.startsWith(EXIT)) {
          exitCode = Number(line.slice(EXIT.length));
        }
        onConsole?.(line);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const interrupted = () => {
      child.kill('SIGKILL');
      process.exit(130);
    };
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    const finish = () => {
      clearTimeout(timer);
      live.delete(child);
      process.removeListener('SIGINT', interrupted);
      process.removeListener('SIGTERM', interrupted);
      fs.rmSync(dir, { recursive: true, force: true });
    };
    child.on('error', (error) => {
      finish();
      reject(
        error.code !== 'ENOENT'
          ? error
          : new Error(
              `${file} is not installed: ${file === 'ip' ? 'apt-get install iproute2' : 'run npm run lab:prepare'}`,
            ),
      );
    });
    child.on('close', () => {
      finish();
      if (partial) lines.push(partial);
      resolve({ exitCode, timedOut, results, console: lines.join('\n'), ms: Date.now() - started });
    });
  });
}

/**
 * Shell lines that hand one transport (its platform device, e.g.
 * "a003c00.virtio_mmio") from uio_pdrv_genirq to the guest kernel's own
 * virtio-mmio driver, after loading virtio_mmio and `modules`.
 */
function kernelDriverCommands(platformDevice, modules) {
  return [
    `for m in virtio_mmio ${modules.join(' ')}; do insmod /lab/modules/$m.ko; done`,
    `echo ${platformDevice} > /sys/bus/platform/drivers/uio_pdrv_genirq/unbind`,
    `echo virtio-mmio > /sys/bus/platform/devices/${platformDevice}/driver_override`,
    `echo ${platformDevice} > /sys/bus/platform/drivers/virtio-mmio/bind`,
  ];
}

module.exports = { runLab, labReady, cpio, kernelDriverCommands, READY, ARCHES, CARVE_OUT };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const devices = [];
  const extraArgs = [];
  let legacy = false;
  let arch;
  let above4GiB = false;
  let backport = false;
  let netns;
  let timeoutMs = 300_000;
  let i = 0;
  for (; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--legacy') legacy = true;
    else if (argv[i] === '--arch') arch = argv[++i];
    else if (argv[i] === '--above-4gib') above4GiB = true;
    else if (argv[i] === '--backport') backport = true;
    else if (argv[i] === '--netns') netns = argv[++i];
    else if (argv[i] === '--device') devices.push(argv[++i]);
    else if (argv[i] === '--qemu') extraArgs.push(argv[++i]);
    else if (argv[i] === '--timeout') timeoutMs = Number(argv[++i]) * 1000;
    else {
      console.error(
        `unknown option ${argv[i]}\nusage: node scripts/lab/run.js [--arch arm64|armhf|amd64 [--above-4gib]] ` +
          `[--legacy] [--device SPEC]... [--qemu ARG]... [--backport] [--netns NAME] [--timeout S] -- COMMAND...`,
      );
      process.exit(2);
    }
  }
  const command = argv.slice(i + 1).join(' ');
  runLab({
    arch,
    above4GiB,
    backport,
    netns,
    devices,
    extraArgs,
    legacy,
    command,
    timeoutMs,
    onConsole: (line) => console.log(line),
  }).then(
    (r) => {
      if (r.timedOut) console.error(`lab: timed out after ${timeoutMs / 1000} s`);
      process.exit(r.timedOut ? 124 : (r.exitCode ?? 1));
    },
    (error) => {
      console.error(`lab: ${error.message}`);
      process.exit(1);
    },
  );
}
