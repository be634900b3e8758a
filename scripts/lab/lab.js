'use strict';
// The main job (npm run lab): prepares the lab if needed (root the first
// time: apt), boots the arm64 guest with QEMU's virtio-rng on Version 2,
// and runs the demo in it: every virtio-mmio transport found through UIO,
// each device's features, random bytes from the rng. Exits 0 on success.
//
//   npm run lab [-- --legacy] [-- --quiet]

const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { runLab } = require('./run.js');

const legacy = process.argv.includes('--legacy');
const quiet = process.argv.includes('--quiet');

const prepared = spawnSync('bash', [path.join(__dirname, 'prepare.sh')], {
  stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'],
});
if (prepared.status !== 0) {
  console.error('lab: prepare failed (see above)');
  process.exit(prepared.status || 1);
}

const started = Date.now();
console.log(
  `lab: booting the arm64 guest (QEMU TCG, virtio-mmio Version ${legacy ? '1' : '2'}, one virtio-rng-device)`,
);
runLab({
  devices: ['virtio-rng-device'],
  legacy,
  command: 'node scripts/lab/guest/demo.js',
  timeoutMs: 180_000,
  onConsole: (line) => {
    if (!line.startsWith('@@') && !/^\[\s*\d+\.\d+\]/.test(line)) console.log(line);
  },
}).then(
  (run) => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (run.timedOut) {
      console.error(`lab: the guest timed out after ${seconds} s`);
      process.exit(124);
    }
    console.log(`lab: guest exited with ${run.exitCode} after ${seconds} s`);
    process.exit(run.exitCode ?? 1);
  },
  (error) => {
    console.error(`lab: ${error.message}`);
    process.exit(1);
  },
);
