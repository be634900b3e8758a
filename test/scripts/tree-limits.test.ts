/**
 * The tree's own size limits (issue 21): no source line over 120 characters
 * (what prettier cannot wrap: comments, string literals), no lib file over
 * 450 lines (split by concern instead).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { longLines } = require('../../scripts/check-line-length.js') as {
  longLines: (dirs: string[], max: number, root?: string) => string[];
};

const ROOT = resolve(__dirname, '../..');
const MAX_LIB_LINES = 450;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [path] : [];
  });
}

test('no source line in lib/, test/, scripts/ or bench/ is over 120 characters', () => {
  expect(longLines(['lib', 'test', 'scripts', 'bench'], 120, ROOT)).toEqual([]);
});

test(`no lib file is over ${MAX_LIB_LINES} lines`, () => {
  const files = tsFiles(join(ROOT, 'lib'));
  expect(files.length).toBeGreaterThan(50);
  const over = files
    .map((file) => ({ file: relative(ROOT, file), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
    .filter((f) => f.lines > MAX_LIB_LINES);
  expect(over).toEqual([]);
});
