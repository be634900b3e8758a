/**
 * `Symbol.dispose` and `Symbol.asyncDispose` where the runtime lacks them,
 * with the very symbols Node defines (`Symbol.for('nodejs.dispose')`, as
 * Node 18.18+ and 20.4+ do), so the library's `[Symbol.dispose]()` methods
 * are keyed right everywhere: on older Node, and in realms that did not get
 * Node's own definition (a vm context, e.g. jest's test environment). Only
 * fills in a missing symbol; never replaces one. Imported, for this effect,
 * by every module that defines a `[Symbol.dispose]()` method.
 */
const symbols = Symbol as unknown as { dispose?: symbol; asyncDispose?: symbol };
symbols.dispose ??= Symbol.for('nodejs.dispose');
symbols.asyncDispose ??= Symbol.for('nodejs.asyncDispose');

export {};
