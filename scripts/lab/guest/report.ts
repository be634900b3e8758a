/** Machine-readable lines on the guest console, read back by scripts/lab/run.js. */
export const RESULT_MARKER = '@@LAB-RESULT ';

export function report(result: Record<string, unknown>): void {
  const json = JSON.stringify(result, (_key, value: unknown) =>
    typeof value === 'bigint' ? `0x${value.toString(16)}` : value,
  );
  process.stdout.write(`${RESULT_MARKER}${json}\n`);
}

/** Runs a guest program: exit 0 when it resolves, 1 (with the error on the console) when it throws. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
