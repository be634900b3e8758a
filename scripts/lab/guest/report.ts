/** Machine-readable lines on the guest console, read back by scripts/lab/run.js. */
export const RESULT_MARKER = '@@LAB-RESULT ';

export function report(result: Record<string, unknown>): void {
  const json = JSON.stringify(result, (_key, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value));
  process.stdout.write(`${RESULT_MARKER}${json}\n`);
}
