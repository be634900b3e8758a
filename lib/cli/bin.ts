#!/usr/bin/env node
// The `virtio-mmio` command (package.json "bin"); see main.ts for the commands.
import { resetDevicesOnSignals } from '../transport/exit-reset';
import { runCli } from './main';

const isTTY = process.stderr.isTTY === true;

// Ctrl-C or a kill in the middle of a command (a bench, a long read): reset every device this process
// drives, then exit 130 (SIGINT) or 143 (SIGTERM). Without it Node dies by the signal and leaves the
// device live, DMAing into memory the kernel takes back.
resetDevicesOnSignals({
  onReset(signal, labels) {
    // A progress bar (drawn on a terminal, or asked for) may own the current line.
    const bar = isTTY || process.argv.includes('--progress');
    if (labels.length > 0)
      process.stderr.write(`${bar ? '\n' : ''}virtio-mmio: ${signal}: reset ${labels.join(', ')}\n`);
  },
});

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, isTTY }).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`virtio-mmio: ${String((error as Error)?.stack ?? error)}\n`);
    process.exitCode = 1;
  },
);
