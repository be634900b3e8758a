'use strict';
// The README's bring-up walkthrough, captured from the lab: boots the guest
// with an rng, a blk (16 MiB image), a console whose port 0 a host socket
// echoes, and a NIC on a QEMU hub, then runs the virtio-mmio CLI as an
// engineer would on a new board and prints what it printed.
//
//   node scripts/lab/walkthrough.js [--legacy]

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { runLab } = require('./run.js');

const STEPS = [
  'scan',
  'inspect /dev/uio30',
  'selftest /dev/uio31',
  'selftest /dev/uio30 --strict',
  'selftest /dev/uio29 --strict',
  'selftest /dev/uio28 --strict',
  'rng /dev/uio31 --bytes 16',
  'blk /dev/uio30 info',
  'blk /dev/uio30 write 2048 --pattern random --sectors 8 --verify --flush',
  'blk /dev/uio30 read 0 --bytes 64',
  // The progress bar goes to stderr (drawn here: the serial console is a terminal).
  'blk /dev/uio30 bench --depth 8 --seconds 3 2>/dev/null',
  'dump /dev/uio31 --queue 0',
];

async function main() {
  const legacy = process.argv.includes('--legacy');
  // The guest runs what the sources say now (seconds when nothing changed).
  const prepared = spawnSync('bash', [path.join(__dirname, 'prepare.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (prepared.status !== 0) throw new Error('scripts/lab/prepare.sh failed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-walkthrough-'));
  const image = path.join(dir, 'disk.img');
  // A disk with a recognisable first sector.
  const disk = Buffer.alloc(16 * 1024 * 1024);
  disk.write('virtio-mmio walkthrough disk', 0);
  fs.writeFileSync(image, disk);
  const server = net.createServer((socket) => {
    socket.on('data', (data) => socket.write(data));
    socket.on('error', () => undefined);
  });
  await new Promise((resolve) => server.listen(path.join(dir, 'console.sock'), resolve));
  const command = [
    // The package's bin, as `npm install` would put it on PATH.
    'mkdir -p /tmp/bin',
    'printf \'#!/bin/busybox sh\\nexec node /opt/virtio-mmio/lib/cli/bin.js "$@"\\n\' > /tmp/bin/virtio-mmio',
    'chmod +x /tmp/bin/virtio-mmio',
    'export PATH=/tmp/bin:$PATH',
    ...STEPS.map(
      (step) =>
        `echo '$ virtio-mmio ${step}'; virtio-mmio ${step}${step.includes('2>') ? '' : ' 2>&1'} || echo ` +
        `"(exit status $?)"; echo`,
    ),
  ].join('\n');
  const printed = [];
  let on = false;
  try {
    const run = await runLab({
      // QEMU fills transports from the top: rng /dev/uio31, blk uio30, console uio29, net uio28.
      devices: [
        'virtio-rng-device',
        'virtio-blk-device,drive=blk0',
        'virtio-serial-device',
        'virtconsole,chardev=con0',
        'virtio-net-device,netdev=n0',
      ],
      extraArgs: [
        '-drive',
        `file=${image},if=none,format=raw,id=blk0`,
        '-chardev',
        `socket,id=con0,path=${path.join(dir, 'console.sock')}`,
        '-netdev',
        'hubport,id=n0,hubid=0',
      ],
      legacy,
      command,
      timeoutMs: 300_000,
      onConsole: (line) => {
        if (line.startsWith('$ virtio-mmio ')) on = true;
        if (on && !line.startsWith('@@LAB-')) printed.push(line);
      },
    });
    process.stdout.write(`${printed.join('\n').trimEnd()}\n`);
    if (run.timedOut || run.exitCode !== 0)
      throw new Error(`guest exit ${run.exitCode}${run.timedOut ? ' (timed out)' : ''}`);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(`walkthrough: ${error.message}`);
  process.exit(1);
});
