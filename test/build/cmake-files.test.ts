/**
 * CMakeLists.txt builds the addons binding.gyp builds (binding.gyp is what
 * `npm install` runs; cmake-js and cross builds use CMakeLists.txt). These
 * hold the two to the same targets, sources and defines, so they cannot
 * drift, and check the cross toolchain files name the right compilers.
 * Nothing is built here: scripts/build/check-cmake-addon.sh builds and tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(__dirname, '../..');
const read = (file: string): string => readFileSync(resolve(root, file), 'utf8');

/**
 * Drops comments (from `#` to the end of the line) outside double-quoted strings; `also` rewrites what is left, outside
 * strings.
 */
function stripComments(text: string, also: (code: string) => string = (code) => code): string {
  let out = '';
  let code = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      out += also(code);
      code = '';
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      code += '\n';
    } else {
      code += ch;
    }
  }
  return out + also(code);
}

interface GypTarget {
  target_name: string;
  sources?: string[];
}

/** binding.gyp is a Python literal; without comments and trailing commas, JSON. */
function gypFile(): { defines: string[]; targets: Map<string, string[]> } {
  const gyp = JSON.parse(stripComments(read('binding.gyp'), (code) => code.replace(/,(\s*[\]}])/g, '$1')));
  const targets = new Map<string, string[]>();
  // Targets sit in "targets" and in the "conditions" that add some.
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node !== null && typeof node === 'object') {
      const target = node as GypTarget;
      if (typeof target.target_name === 'string') targets.set(target.target_name, [...(target.sources ?? [])].sort());
      Object.values(node).forEach(walk);
    }
  };
  walk(gyp);
  return { defines: gyp.target_defaults.defines, targets };
}

/** The arguments of every `command(...)` call in a CMake file, comments dropped (no nested parentheses needed here). */
function cmakeCalls(text: string, command: string): string[][] {
  const code = stripComments(text);
  const calls: string[][] = [];
  for (const m of code.matchAll(new RegExp(`(?:^|[^\\w])${command}\\s*\\(([^)]*)\\)`, 'gi'))) {
    calls.push(m[1].trim().split(/\s+/).filter(Boolean));
  }
  return calls;
}

function cmakeTargets(): Map<string, string[]> {
  const targets = new Map<string, string[]>();
  for (const [name, kind, ...rest] of cmakeCalls(read('CMakeLists.txt'), 'add_library')) {
    if (kind === 'INTERFACE') continue;
    targets.set(name, rest.filter((arg) => arg.endsWith('.cc')).sort());
  }
  return targets;
}

describe('CMakeLists.txt and binding.gyp', () => {
  const gyp = gypFile();
  const cmake = cmakeTargets();

  it('build the same addons', () => {
    expect([...gyp.targets.keys()].sort()).toEqual(['virtio_mmio', 'virtio_mmio_bench']);
    expect([...cmake.keys()].sort()).toEqual([...gyp.targets.keys()].sort());
  });

  it.each(['virtio_mmio', 'virtio_mmio_bench'])('list exactly the same .cc files for %s, all of which exist', (name) => {
    const sources = gyp.targets.get(name) ?? [];
    expect(sources.length).toBeGreaterThan(0);
    expect(cmake.get(name)).toEqual(sources);
    for (const file of sources) expect(existsSync(resolve(root, file))).toBe(true);
  });

  it("define what binding.gyp's target_defaults define (NAPI_VERSION, exceptions)", () => {
    const cmakeDefines = cmakeCalls(read('CMakeLists.txt'), 'target_compile_definitions').flat();
    expect(gyp.defines).toContain('NAPI_VERSION=8');
    for (const define of gyp.defines) expect(cmakeDefines).toContain(define);
  });
});

describe.each([
  { file: 'cmake/toolchains/aarch64-linux-gnu.cmake', processor: 'aarch64', triple: 'aarch64-linux-gnu' },
  { file: 'cmake/toolchains/arm-linux-gnueabihf.cmake', processor: 'arm', triple: 'arm-linux-gnueabihf' },
])('$file', ({ file, processor, triple }) => {
  const text = existsSync(resolve(root, file)) ? read(file) : '';
  /** The value a `set(name value ...)` gives, when one without a variable in it exists (the default). */
  const literal = (name: string): string | undefined =>
    cmakeCalls(text, 'set')
      .filter(([n]) => n === name)
      .map(([, value]) => value.replace(/^"|"$/g, ''))
      .find((value) => !value.includes('$'));
  /** A compiler's name as set, with the default prefix put in. */
  const compiler = (name: string): string | undefined => {
    const set = cmakeCalls(text, 'set').find(([n]) => n === name);
    return set?.[1].replace(/^"|"$/g, '').replace('${cross_prefix}', literal('cross_prefix') ?? '<no default prefix>');
  };

  it('exists', () => {
    expect(text).not.toBe('');
  });

  it(`targets Linux on ${processor}`, () => {
    expect(literal('CMAKE_SYSTEM_NAME')).toBe('Linux');
    expect(literal('CMAKE_SYSTEM_PROCESSOR')).toBe(processor);
  });

  it(`names ${triple}-gcc and ${triple}-g++ (Debian's g++-${triple}) unless CROSS_COMPILE says otherwise`, () => {
    expect(compiler('CMAKE_C_COMPILER')).toBe(`${triple}-gcc`);
    expect(compiler('CMAKE_CXX_COMPILER')).toBe(`${triple}-g++`);
  });

  it("finds headers and libraries in the target's root only, programs on the build machine", () => {
    expect(literal('CMAKE_FIND_ROOT_PATH_MODE_INCLUDE')).toBe('ONLY');
    expect(literal('CMAKE_FIND_ROOT_PATH_MODE_LIBRARY')).toBe('ONLY');
    expect(literal('CMAKE_FIND_ROOT_PATH_MODE_PROGRAM')).toBe('NEVER');
    expect(text).toContain(`list(APPEND CMAKE_FIND_ROOT_PATH /usr/${triple})`);
  });
});

test('the package ships CMakeLists.txt, the toolchain files and LICENSE', () => {
  const { files } = JSON.parse(read('package.json')) as { files: string[] };
  expect(files).toEqual(expect.arrayContaining(['CMakeLists.txt', 'cmake/', 'LICENSE']));
  expect(existsSync(resolve(root, 'LICENSE'))).toBe(true);
});
