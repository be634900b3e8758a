/**
 * The benchmark probes (empty calls, C loops over a region, a second mapping
 * of a file) live in their own addon, build/Release/virtio_mmio_bench.node,
 * built from bench/native and loaded only by bench/ programs. Their C loops
 * unwrap a region they are handed, so anything but a region must be a
 * TypeError: a wrongly unwrapped object is a wild pointer. The probes run in
 * a child process, where a crash is a failed test and not a dead jest worker.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { native } from '../../lib/platform/addon';

const addonPath = resolve(__dirname, '../../build/Release/virtio_mmio.node');
const benchPath = resolve(__dirname, '../../build/Release/virtio_mmio_bench.node');
const PROBES = ['rawNoop', 'wrappedNoop', 'cReadLoop', 'cWriteLoop', 'mapFileView'];

describe('the library addon', () => {
  it('exports no benchmark probes, and has none compiled in', () => {
    expect(native).not.toHaveProperty('bench');
    const binary = readFileSync(addonPath, 'latin1');
    for (const name of PROBES) {
      expect(native).not.toHaveProperty(name);
      expect(binary.includes(name)).toBe(false);
    }
  });
});

describe('the bench addon', () => {
  it('is built beside the library addon (npx node-gyp rebuild in a checkout)', () => {
    expect(existsSync(benchPath)).toBe(true);
  });

  it('runs its C loops on a region, and refuses anything else with a TypeError instead of crashing', () => {
    const script = `
      const fs = require('node:fs'), os = require('node:os'), path = require('node:path');
      const a = require(${JSON.stringify(addonPath)});
      const b = require(${JSON.stringify(benchPath)});
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-addon-'));
      const file = path.join(dir, 'regs');
      fs.writeFileSync(file, Buffer.alloc(4096));
      const region = new a.MmioRegion(file, 0, 0, 4096);
      // Taken for a region, this one's odd device address reads as an open window over unmapped memory.
      const freed = a.allocAnonymous(4096, 0x4000_0001n);
      freed.free();
      const outcome = (call) => {
        try { return typeof call(); } catch (e) { return e.constructor.name + ': ' + e.message; }
      };
      const results = {
        exports: Object.keys(b).sort(),
        read: outcome(() => b.cReadLoop(region, 0x10, 1000)),
        write: outcome(() => b.cWriteLoop(region, 0x10, 1000)),
        freedDma: outcome(() => b.cReadLoop(freed, 0, 1000)),
        liveDma: outcome(() => b.cWriteLoop(a.allocAnonymous(4096, 0n), 0, 1000)),
        // The prototype makes it pass instanceof, not the type tag.
        disguisedDma: outcome(() => {
          const disguised = Object.setPrototypeOf(a.allocAnonymous(4096, 0n), a.MmioRegion.prototype);
          return b.cReadLoop(disguised, 0, 1000);
        }),
        bareObjectOfRegionPrototype: outcome(() => b.cWriteLoop(Object.create(a.MmioRegion.prototype), 0, 1000)),
        plain: outcome(() => b.cReadLoop({}, 0, 1000)),
        number: outcome(() => b.cReadLoop(0x1000, 0, 1000)),
        // The library addon's own ObjectWrap methods: V8 checks the receiver.
        wrapperReceiver: outcome(() => a.MmioRegion.prototype.readlViaWrapper.call(freed, 0)),
      };
      region.close();
      results.closed = outcome(() => b.cReadLoop(region, 0x10, 1000));
      fs.rmSync(dir, { recursive: true });
      console.log(JSON.stringify(results));
    `;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    const refused = 'TypeError: region must be an MmioRegion';
    expect(JSON.parse(child.stdout)).toEqual({
      exports: [...PROBES].sort(),
      read: 'number',
      write: 'number',
      freedDma: refused,
      liveDma: refused,
      disguisedDma: refused,
      bareObjectOfRegionPrototype: refused,
      plain: refused,
      number: refused,
      wrapperReceiver: 'TypeError: Illegal invocation',
      closed: expect.stringMatching(/is closed$/),
    });
  });
});
