/**
 * Catches what the library rethrows in a microtask (a caller's callback
 * that threw: uncaught in a program, as Node does for callbacks) instead
 * of letting jest fail the test on it. Call restore() when done.
 */
export function catchRethrown(): { thrown: unknown[]; restore(): void } {
  const thrown: unknown[] = [];
  const real = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (task) =>
    real(() => {
      try {
        task();
      } catch (error) {
        thrown.push(error);
      }
    });
  return {
    thrown,
    restore() {
      globalThis.queueMicrotask = real;
    },
  };
}
