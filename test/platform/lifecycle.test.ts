/**
 * Lifetimes that only another process or thread can show: the process exits
 * when nothing is waiting, memory outlives collected wrappers, a throwing
 * callback is an ordinary uncaught exception, and the addon works (and tears
 * down cleanly) in worker threads.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const addonPath = resolve(__dirname, '../../build/Release/virtio_mmio.node');

/** Runs a script in a fresh node with `a` bound to the addon; returns status, output and time. */
function runChild(
  body: string,
  timeoutMs = 5000,
  flags: string[] = [],
): { status: number | null; signal: string | null; stdout: string; stderr: string; ms: number } {
  const script = `const a = require(${JSON.stringify(addonPath)});\n${body}`;
  const started = Date.now();
  const child = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', timeout: timeoutMs });
  return {
    status: child.status,
    signal: child.signal,
    stdout: child.stdout,
    stderr: child.stderr,
    ms: Date.now() - started,
  };
}

describe('a process using the addon', () => {
  it('without a handler, a throwing callback ends the process with the error, like any callback', () => {
    const child = runChild(`
      const fd = a.eventfdCreate();
      const s = new a.PollSet(() => { throw new Error('callback bug'); });
      s.add(fd);
      a.eventfdWrite(fd, 1);
    `);
    expect(child.status).toBe(1);
    expect(child.stderr).toContain('callback bug');
  });

  it('keeps DMA memory valid while a view of it lives, after the wrapper is collected', () => {
    const child = runChild(
      `
      let bytes = (() => new Uint8Array(a.allocAnonymous(1 << 20, 0n).view))();
      for (let i = 0; i < 5; i++) global.gc();
      bytes.fill(7);
      console.log(bytes[(1 << 20) - 1], bytes.length);
      bytes = null;
      for (let i = 0; i < 5; i++) global.gc(); // the mapping is released here, without a crash
      console.log('ok');
    `,
      5000,
      ['--expose-gc'],
    );
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('7 1048576\nok\n');
  });

  it('keeps a register window mapped for accessors taken off a collected region', () => {
    const child = runChild(
      `
      const fs = require('fs'), os = require('os'), path = require('path');
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gc-')), 'regs');
      fs.writeFileSync(file, Buffer.alloc(4096));
      const { readl, writel } = (() => new a.MmioRegion(file, 0, 0, 4096))();
      for (let i = 0; i < 5; i++) global.gc();
      writel(8, 0xabcd);
      console.log(readl(8).toString(16), fs.readFileSync(file).readUInt32LE(8).toString(16));
      fs.rmSync(path.dirname(file), { recursive: true });
    `,
      5000,
      ['--expose-gc'],
    );
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('abcd abcd\n');
  });
});

describe('worker threads', () => {
  it('load the addon per thread, use regions, DMA and epoll, and tear down with fds still registered', () => {
    const child = runChild(
      `
      const { Worker } = require('worker_threads');
      const workerBody = \`
        const { parentPort } = require('worker_threads');
        const a = require(${JSON.stringify(addonPath)});
        const m = a.allocAnonymous(4096, 0x1000n);
        new Uint32Array(m.view)[0] = 0xfeed;
        const fd = a.eventfdCreate();
        const s = new a.PollSet(() => {
          a.eventfdRead(fd);
          parentPort.postMessage({ iova: m.iova.toString(16), word: new Uint32Array(m.view)[0] });
          // Leave another fd registered: termination must close the set through the cleanup hook.
          s.add(a.eventfdCreate());
        });
        s.add(fd);
        a.eventfdWrite(fd, 1);
      \`;
      const results = [];
      let pending = 3;
      for (let i = 0; i < 3; i++) {
        const w = new Worker(workerBody, { eval: true });
        w.on('message', async (msg) => {
          results.push(msg);
          await w.terminate();
          if (--pending === 0) { console.log(JSON.stringify(results)); }
        });
        w.on('error', (e) => { console.log('worker error', e.message); process.exitCode = 2; });
      }
    `,
      15000,
    );
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    const results = JSON.parse(child.stdout);
    expect(results).toEqual([
      { iova: '1000', word: 0xfeed },
      { iova: '1000', word: 0xfeed },
      { iova: '1000', word: 0xfeed },
    ]);
  });

  it('exit by themselves when their set is idle', () => {
    const child = runChild(`
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const a = require(${JSON.stringify(addonPath)});
        const s = new a.PollSet(() => {});
        const fd = a.eventfdCreate();
        s.add(fd); s.remove(fd);
      \`, { eval: true });
      w.on('exit', (code) => console.log('worker exit', code));
    `);
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('worker exit 0\n');
  });
});

describe('a process using the addon’s poll set (fds on the event loop’s own epoll set)', () => {
  it.each<[string, string]>([
    ['a poll set with nothing watched', 'const s = new a.PollSet(() => {});'],
    ["an unref'd poll set watching an fd", 'const s = new a.PollSet(() => {}); s.add(a.eventfdCreate()); s.unref();'],
    [
      'an fd added to an unref’d poll set',
      'const s = new a.PollSet(() => {}); s.unref(); s.add(a.eventfdCreate(), 0x80000001);',
    ],
    ['a closed poll set', 'const s = new a.PollSet(() => {}); s.add(a.eventfdCreate()); s.close();'],
    [
      'a poll set whose fds were all removed',
      'const s = new a.PollSet(() => {}); const fd = a.eventfdCreate(); s.add(fd); s.remove(fd);',
    ],
    ['an unreachable poll set (collected)', '(() => new a.PollSet(() => {}))();'],
  ])('exits on its own with %s', (_name, body) => {
    const child = runChild(`${body}\nconsole.log('end of script');`);
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('end of script\n');
  });

  it("stays alive while a ref'd poll set waits, keeps delivering when unreferenced, exits once closed", () => {
    const child = runChild(
      `
      const fd = a.eventfdCreate();
      (() => {
        const s = new a.PollSet((f, events) => { console.log('event', f === fd, events); s.close(); });
        s.add(fd, 0x80000001);
      })();
      global.gc();
      setTimeout(() => { global.gc(); a.eventfdWrite(fd, 1); }, 300).unref(); // only the set keeps the process
    `,
      5000,
      ['--expose-gc'],
    );
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('event true 1\n');
    expect(child.ms).toBeGreaterThanOrEqual(250);
  });

  it('treats a throwing poll callback as an uncaught exception, and keeps polling', () => {
    const child = runChild(`
      let n = 0;
      process.on('uncaughtException', (e) => console.log('uncaught:', e.message));
      const fd = a.eventfdCreate();
      const s = new a.PollSet(() => {
        a.eventfdRead(fd);
        n++;
        if (n === 1) { setTimeout(() => a.eventfdWrite(fd, 1), 10); throw new Error('callback bug'); }
        console.log('second event'); s.close();
      });
      s.add(fd);
      a.eventfdWrite(fd, 1);
    `);
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('uncaught: callback bug\nsecond event\n');
  });

  it('tears down in terminated workers with fds still watched, and lets idle workers exit', () => {
    const child = runChild(
      `
      const { Worker } = require('worker_threads');
      const body = (idle) => \`
        const { parentPort } = require('worker_threads');
        const a = require(${JSON.stringify(addonPath)});
        const fd = a.eventfdCreate();
        const s = new a.PollSet(() => {
          a.eventfdRead(fd);
          s.add(a.eventfdCreate(), 0x80000001); // left watched: the cleanup hook must close it
          parentPort.postMessage('event');
        });
        s.add(fd, 0x80000001);
        if (\${idle}) s.remove(fd); else a.eventfdWrite(fd, 1);
      \`;
      const busy = new Worker(body(false), { eval: true });
      busy.on('message', async (m) => { console.log(m); await busy.terminate(); console.log('terminated');
        const idle = new Worker(body(true), { eval: true });
        idle.on('exit', (code) => console.log('idle exit', code));
      });
    `,
      15000,
    );
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('event\nterminated\nidle exit 0\n');
  });
});
