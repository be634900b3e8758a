/**
 * The README's runnable examples run, and print what the README says they
 * print: every ```ts block followed by a line ending in "prints:" and a
 * ```text block. Each runs in a child process of its own on the library's
 * sources (test/fixtures/ts-hook.js), its imports of `virtio-mmio` and
 * `virtio-mmio/sim`, `/spec`, `/diag` pointed at lib/, its body in an async function (the
 * blocks use top-level await); the child must also end by itself.
 * (test/readme.test.ts type-checks every block.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(__dirname, '../..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const examples = [
  ...readme.matchAll(/```ts\n((?:(?!```)[\s\S])*)```\n\n[^\n`]*prints:\n\n```text\n((?:(?!```)[\s\S])*)```/gi),
].map((m) => ({ code: m[1], output: m[2] }));

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'readme-run-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('the README has runnable examples (hostile device, console echo, your own driver on the sim, using)', () => {
  expect(examples.length).toBeGreaterThanOrEqual(3);
});

test.each(
  examples.map(
    (example, i) =>
      [example.code.split('\n').find((line) => line.startsWith('//')) ?? `example ${i}`, example] as const,
  ),
)(
  '%s',
  (_, { code, output }) => {
    const lines = code.split('\n');
    const firstBody = lines.findIndex(
      (line) => !line.startsWith('import ') && !line.startsWith('//') && line.trim() !== '',
    );
    const imports = lines
      .slice(0, firstBody)
      .join('\n')
      .replace(
        /from 'virtio-mmio\/(sim|spec|diag)'/g,
        (_, entry: string) => `from ${JSON.stringify(join(root, 'lib', entry))}`,
      )
      .replace(/from 'virtio-mmio'/g, `from ${JSON.stringify(join(root, 'lib'))}`);
    const source =
      `${imports}\nasync function main(): Promise<void> {\n${lines.slice(firstBody).join('\n')}` +
      `\n}\nmain().catch((error) => { console.error(error); process.exitCode = 1; });\n`;
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    const file = join(dir, `example-${Math.random().toString(36).slice(2)}.js`);
    writeFileSync(file, `require(${JSON.stringify(join(root, 'test/fixtures/ts-hook.js'))});\n${js}`);
    const child = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toBe(output);
  },
  90_000,
);
