#!/usr/bin/env node
// The `virtio-mmio` command (package.json "bin"); see main.ts for the commands.
import { runCli } from './main';

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, isTTY: process.stderr.isTTY === true }).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`virtio-mmio: ${String((error as Error)?.stack ?? error)}\n`);
    process.exitCode = 1;
  },
);
