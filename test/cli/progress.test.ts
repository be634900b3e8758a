import { Progress, REDRAW_MS, formatBytes } from '../../lib/cli/progress';

const MiB = 1024 * 1024;

/** A Progress over a captured output and a clock the test moves by hand. */
function rig(options: { total: number; label?: string; unit?: 'bytes' | 'ms'; width?: number }) {
  let time = 1000;
  const writes: string[] = [];
  const progress = new Progress(
    { write: (text: string) => writes.push(text) },
    { label: options.label ?? 'read', total: options.total, unit: options.unit, width: options.width, now: () => time },
  );
  return {
    progress,
    writes,
    at(ms: number) {
      time = 1000 + ms;
    },
  };
}

describe('Progress', () => {
  test('a redraw shows bytes done of the total, percent, rate and a bar of #', () => {
    const { progress, writes, at } = rig({ total: 4 * MiB, width: 20 });
    at(REDRAW_MS);
    progress.update(1 * MiB);
    expect(writes).toEqual([`\rread [#####               ]  25 %  1.0 MiB / 4.0 MiB  10.0 MiB/s`]);
  });

  test('redraws at most every 100 ms, whatever the number of updates', () => {
    const { progress, writes, at } = rig({ total: 1000 * MiB });
    for (let ms = 1; ms <= 1000; ms++) {
      at(ms);
      progress.update(ms * MiB);
    }
    expect(writes).toHaveLength(10);
    expect(writes.every((w) => w.startsWith('\r') && !w.includes('\n'))).toBe(true);
    // Each redraw shows the amount at its time: 100 MiB after 100 ms, 200 MiB after 200 ms…
    expect(writes.map((w) => /(\d+\.\d) MiB \//.exec(w)?.[1])).toEqual([
      '100.0',
      '200.0',
      '300.0',
      '400.0',
      '500.0',
      '600.0',
      '700.0',
      '800.0',
      '900.0',
      '1000.0',
    ]);
  });

  test('no redraw before 100 ms have passed since the start or the last redraw', () => {
    const { progress, writes, at } = rig({ total: 100 });
    at(REDRAW_MS - 1);
    progress.update(10);
    expect(writes).toEqual([]);
    at(REDRAW_MS);
    progress.update(20);
    at(2 * REDRAW_MS - 1);
    progress.update(30);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toContain('20 B / 100 B');
  });

  test('finish() draws the final 100 % line with the totals and overall rate, then a newline; nothing after', () => {
    const { progress, writes, at } = rig({ total: 3 * MiB, width: 10 });
    at(50);
    progress.update(MiB);
    at(2000);
    progress.finish();
    expect(writes).toEqual(['\rread [##########] 100 %  3.0 MiB / 3.0 MiB  1.5 MiB/s\n']);
    at(5000);
    progress.update(3 * MiB);
    progress.finish();
    expect(writes).toHaveLength(1);
  });

  test('finish(done) after a failure shows how far it got', () => {
    const { progress, writes, at } = rig({ total: 4096, width: 4 });
    at(1000);
    progress.finish(1024);
    expect(writes).toEqual(['\rread [#   ]  25 %  1.0 KiB / 4.0 KiB  1.0 KiB/s\n']);
  });

  test('percent is 100 only when all is done', () => {
    const { progress, writes, at } = rig({ total: 1000 });
    at(REDRAW_MS);
    progress.update(999);
    expect(writes[0]).toContain(' 99 %');
  });

  test('the amount done never goes back nor past the total', () => {
    const { progress, writes, at } = rig({ total: 1000 });
    at(REDRAW_MS);
    progress.update(600);
    at(2 * REDRAW_MS);
    progress.update(100);
    at(3 * REDRAW_MS);
    progress.update(5000);
    expect(writes.map((w) => /(\d+) B \//.exec(w)?.[1])).toEqual(['600', '600', '1000']);
  });

  test('a shorter line is padded over the longer one before it', () => {
    const { progress, writes, at } = rig({ total: 1000, label: 'x' });
    at(REDRAW_MS);
    progress.update(500, 'a long detail text');
    at(2 * REDRAW_MS);
    progress.update(600);
    expect(writes[1].length).toBe(writes[0].length);
    expect(writes[1]).toMatch(/B\/s {20}$/);
  });

  test("unit 'ms': seconds of the total and the caller's detail, no byte rate", () => {
    const { progress, writes, at } = rig({ total: 3000, unit: 'ms', label: 'bench', width: 6 });
    at(REDRAW_MS);
    progress.update(1500, '1234 IOPS');
    expect(writes).toEqual(['\rbench [###   ]  50 %  1.5 s / 3.0 s  1234 IOPS']);
  });

  test('a total of 0 is 100 % at once; a bad total is refused', () => {
    const { progress, writes } = rig({ total: 0, width: 2 });
    progress.finish();
    expect(writes[0]).toContain('[##] 100 %');
    expect(() => new Progress({ write: () => 0 }, { total: -1, label: 'x' })).toThrow(RangeError);
    expect(() => new Progress({ write: () => 0 }, { total: NaN, label: 'x' })).toThrow(RangeError);
  });
});

describe('formatBytes', () => {
  test.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [4 * MiB, '4.0 MiB'],
    [3 * 1024 * MiB, '3.0 GiB'],
  ])('%d bytes: %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
