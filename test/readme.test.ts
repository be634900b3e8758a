/** The README's TypeScript examples compile against the library as it is (docs that match the code). */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(__dirname, '..');

test('every ts block of README.md typechecks', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  const dir = mkdtempSync(join(tmpdir(), 'readme-'));
  try {
    const files = blocks.map((code, i) => {
      const file = join(dir, `block${i}.ts`);
      // Each block is its own module (top-level await allowed).
      writeFileSync(file, `${code}\nexport {};\n`);
      return file;
    });
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ES2022,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      baseUrl: root,
      paths: {
        'virtio-mmio': ['lib/index.ts'],
        'virtio-mmio/spec': ['lib/spec/index.ts'],
        'virtio-mmio/diag': ['lib/diag/index.ts'],
        'virtio-mmio/sim': ['lib/sim/index.ts'],
      },
      types: ['node'],
      typeRoots: [join(root, 'node_modules/@types')],
      skipLibCheck: true,
      esModuleInterop: true,
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map(
        (d) =>
          `${d.file ? `${d.file.fileName.replace(dir, 'README')}: ` : ''}` +
          `${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
      );
    expect(problems).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
