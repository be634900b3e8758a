#!/usr/bin/env node
// Fails when a source line in lib/, test/, scripts/ or bench/ is longer than 120 characters (prettier's printWidth,
// which cannot wrap comments or string literals). Usage: node scripts/check-line-length.js [--max N] [dir ...]
'use strict';
const { readdirSync, readFileSync } = require('node:fs');
const { join, relative } = require('node:path');
const { parseArgs } = require('node:util');

const SOURCE = /\.(ts|js|mjs|cjs)$/;
const SKIP = new Set(['node_modules', 'dist', 'build', '.lab-cache', 'prebuilds']);

function* sourceFiles(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') return;
    throw err;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP.has(entry.name)) yield* sourceFiles(path);
    } else if (entry.isFile() && SOURCE.test(entry.name)) {
      yield path;
    }
  }
}

/** The lines of `dirs` longer than `max` characters (code points), as "path:line: N characters". */
function longLines(dirs, max, root = process.cwd()) {
  const found = [];
  for (const dir of dirs) {
    for (const file of sourceFiles(join(root, dir))) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          const length = [...line].length;
          if (length > max) found.push(`${relative(root, file)}:${i + 1}: ${length} characters`);
        });
    }
  }
  return found;
}

if (require.main === module) {
  const { values, positionals } = parseArgs({
    options: { max: { type: 'string', default: '120' } },
    allowPositionals: true,
  });
  const max = Number(values.max);
  const found = longLines(positionals.length > 0 ? positionals : ['lib', 'test', 'scripts', 'bench'], max);
  for (const line of found) console.error(line);
  if (found.length > 0) {
    console.error(`${found.length} line(s) over ${max} characters`);
    process.exitCode = 1;
  }
}

module.exports = { longLines };
