/**
 * Runs in the lab guest: a UDP echo server (port 7, RFC 862) on the guest
 * kernel's own network stack, for net-offload.js to talk to. Each datagram
 * goes back to its sender. Once bound it creates the file named by its
 * argument, so the shell can wait for it; it runs until killed.
 *
 *   node scripts/lab/guest/udp-echo.js <ready-file> [address]
 */
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';

const [ready, address = '10.0.0.1'] = process.argv.slice(2);
if (!ready) throw new Error('usage: udp-echo.js <ready-file> [address]');
const socket = createSocket('udp4');
socket.on('message', (message, from) => socket.send(message, from.port, from.address));
socket.bind(7, address, () => writeFileSync(ready, `${process.pid}\n`));
