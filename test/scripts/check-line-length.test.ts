import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SCRIPT = resolve(__dirname, '../../scripts/check-line-length.js');

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'line-length-'));
  mkdirSync(join(root, 'lib', 'deep'), { recursive: true });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { cwd: root, encoding: 'utf8' });

describe('scripts/check-line-length.js', () => {
  test('passes on lines of 120 characters, multi-byte ones counted as one', () => {
    writeFileSync(join(root, 'lib', 'ok.ts'), `${'x'.repeat(120)}\n// ${'§'.repeat(117)}\n`);
    const result = run();
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  test('fails on a line of 121 characters and names its file and line', () => {
    writeFileSync(join(root, 'lib', 'deep', 'long.js'), `short\n${'y'.repeat(121)}\n`);
    writeFileSync(join(root, 'lib', 'notes.md'), `${'z'.repeat(300)}\n`); // not a source file
    const result = run();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${join('lib', 'deep', 'long.js')}:2: 121 characters`);
    expect(result.stderr).toContain('1 line(s) over 120 characters');
    expect(result.stderr).not.toContain('notes.md');
  });

  test('skips node_modules and takes --max and directories', () => {
    mkdirSync(join(root, 'bench', 'node_modules'), { recursive: true });
    writeFileSync(join(root, 'bench', 'node_modules', 'dep.js'), `${'n'.repeat(500)}\n`);
    writeFileSync(join(root, 'bench', 'b.js'), `${'b'.repeat(90)}\n`);
    expect(run().status).toBe(0);
    const narrow = run('--max', '80', 'bench');
    expect(narrow.status).toBe(1);
    expect(narrow.stderr).toContain(`${join('bench', 'b.js')}:1: 90 characters`);
  });
});
