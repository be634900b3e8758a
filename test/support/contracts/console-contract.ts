import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { VirtioConsole, VirtioConsoleOptions } from '../../../lib/devices';
import { sameBytes, type ContractCase } from './contract';

/** The far end of the console: what the device connects port 0 to. */
export interface ConsolePeer {
  /** Bytes for the driver to receive. */
  send(data: Buffer): void;
  /** Resolves with the first `bytes` bytes the driver transmitted since open. */
  received(bytes: number): Promise<Buffer>;
}

/** A virtio-console device to check, opened fresh for each case. */
export interface ConsoleSubject {
  readonly label: string;
  open(options?: Partial<VirtioConsoleOptions>): Promise<ConsoleHandle>;
}

export interface ConsoleHandle {
  readonly console: VirtioConsole;
  /** The port under test: port 0's stream, or another port's. */
  readonly stream: Duplex;
  /** The far end, when the subject can drive it (not for echo peers). */
  readonly peer?: ConsolePeer;
  close(): void;
}

function peerOf(handle: ConsoleHandle): ConsolePeer {
  assert.ok(handle.peer, 'this subject has no drivable peer (consoleContract needs one; use consoleEchoContract)');
  return handle.peer;
}

async function withConsole(
  subject: ConsoleSubject,
  options: Partial<VirtioConsoleOptions>,
  body: (h: ConsoleHandle) => Promise<void>,
): Promise<void> {
  const handle = await subject.open(options);
  try {
    await body(handle);
  } finally {
    handle.close();
  }
}

/**
 * Reads exactly `bytes` bytes from the stream (or fails if it ends first).
 * The stream stays open (a for-await loop that breaks would destroy it, and
 * destroying port 0's stream closes the console); bytes past `bytes` are
 * put back.
 */
function readExactly(stream: NodeJS.ReadableStream & Duplex, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (total < bytes) return;
      cleanup();
      stream.pause();
      const all = Buffer.concat(chunks);
      if (all.length > bytes) stream.unshift(all.subarray(bytes));
      resolve(all.subarray(0, bytes));
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`the stream ended after ${total} of ${bytes} bytes`));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    stream.resume();
  });
}

/** The virtio-console contract (virtio 1.2 §5.3, port 0). */
export function consoleContract(subject: ConsoleSubject): ContractCase[] {
  return [
    {
      name: 'bytes written to the stream reach the other end in order',
      run: () =>
        withConsole(subject, { transmitBufferBytes: 1000 }, async (handle) => {
          const { stream } = handle;
          const peer = peerOf(handle);
          const data = randomBytes(50_000);
          for (let at = 0; at < data.length; at += 7000) stream.write(data.subarray(at, at + 7000));
          sameBytes(await peer.received(data.length), data, 'transmitted');
        }),
    },
    {
      name: 'bytes from the other end arrive on the stream in order',
      run: () =>
        withConsole(subject, {}, async (handle) => {
          const { stream } = handle;
          const peer = peerOf(handle);
          const data = randomBytes(50_000);
          peer.send(data);
          sameBytes(await readExactly(stream, data.length), data, 'received');
        }),
    },
    {
      name: 'a reader that stops reading loses nothing (receive buffers are held back, then re-posted)',
      run: () =>
        withConsole(subject, { receiveBuffers: 4, receiveBufferBytes: 512 }, async (handle) => {
          const { stream } = handle;
          const peer = peerOf(handle);
          stream.pause();
          const data = randomBytes(200_000);
          peer.send(data);
          await new Promise((resolve) => setTimeout(resolve, 200));
          sameBytes(await readExactly(stream, data.length), data, 'received after a pause');
        }),
    },
    {
      name: 'both directions at once',
      run: () =>
        withConsole(subject, {}, async (handle) => {
          const { stream } = handle;
          const peer = peerOf(handle);
          const out = randomBytes(20_000);
          const back = randomBytes(20_000);
          stream.write(out);
          peer.send(back);
          const [sent, got] = await Promise.all([peer.received(out.length), readExactly(stream, back.length)]);
          sameBytes(sent, out, 'transmitted');
          sameBytes(got, back, 'received');
        }),
    },
  ];
}

/**
 * The console against an echo peer (everything transmitted comes back):
 * the form the lab can drive, where the far end is a host socket that
 * echoes. The same cases run on the sim's echoing ConsoleModel.
 */
export function consoleEchoContract(subject: ConsoleSubject): ContractCase[] {
  return [
    {
      name: 'an echoed stream comes back byte for byte, in order',
      run: () =>
        withConsole(subject, {}, async ({ stream }) => {
          const data = randomBytes(30_000);
          const back = readExactly(stream, data.length);
          for (let at = 0; at < data.length; at += 3000) stream.write(data.subarray(at, at + 3000));
          sameBytes(await back, data, 'echoed');
        }),
    },
    {
      name: 'many small writes come back whole',
      run: () =>
        withConsole(subject, {}, async ({ stream }) => {
          const lines = Array.from({ length: 200 }, (_, i) => Buffer.from(`line ${i}\n`));
          const total = lines.reduce((n, l) => n + l.length, 0);
          const back = readExactly(stream, total);
          for (const line of lines) stream.write(line);
          sameBytes(await back, Buffer.concat(lines), 'echoed lines');
        }),
    },
    {
      name: 'a paused reader loses nothing of the echo',
      run: () =>
        withConsole(subject, { receiveBuffers: 4, receiveBufferBytes: 512 }, async ({ stream }) => {
          stream.pause();
          const data = randomBytes(64_000);
          stream.write(data);
          await new Promise((resolve) => setTimeout(resolve, 300));
          sameBytes(await readExactly(stream, data.length), data, 'echoed after a pause');
        }),
    },
  ];
}

/** What a MULTIPORT device is known to have (the lab's QEMU command line, or the sim model's ports). */
export interface MultiportExpectation {
  /** Ports the device adds at start, with the name and console role it gives them. */
  ports: { id: number; name?: string; isConsole: boolean }[];
  /** Name of a port whose far end echoes. */
  echoPort: string;
}

const PORT_WAIT_MS = 10_000;

/** Resolves once `condition()` holds, checking every 10 ms for at most `ms`. */
async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** Sends `data` on `stream` in pieces and resolves with what came back, byte for byte. */
async function echoThrough(stream: Duplex, data: Buffer): Promise<void> {
  const back = readExactly(stream, data.length);
  for (let at = 0; at < data.length; at += 3000) stream.write(data.subarray(at, at + 3000));
  sameBytes(await back, data, 'echoed');
}

/**
 * MULTIPORT (virtio 1.2 §5.3.6.2): ports announced over the control queue,
 * named ports carrying their own streams, a port closed and opened again.
 * The subject's consoles must negotiate MULTIPORT.
 */
export function consoleMultiportContract(subject: ConsoleSubject, expected: MultiportExpectation): ContractCase[] {
  return [
    {
      name: 'MULTIPORT is negotiated and the device announces its ports with their names and console roles',
      run: () =>
        withConsole(subject, {}, async ({ console }) => {
          assert.equal(console.multiport, true, 'MULTIPORT negotiated');
          for (const want of expected.ports) {
            const port = await console.waitForPort(want.name ?? want.id, { timeoutMs: PORT_WAIT_MS });
            assert.equal(port.id, want.id, `id of port ${want.name ?? want.id}`);
            assert.equal(port.added, true);
            // CONSOLE_PORT follows the device's DEVICE_ADD and our PORT_READY: give it time to come.
            if (want.isConsole) await until(() => port.isConsole, PORT_WAIT_MS);
            assert.equal(port.isConsole, want.isConsole, `console role of port ${want.id}`);
          }
          assert.deepEqual(
            console.ports.map((p) => p.id).sort((a, b) => a - b),
            expected.ports.map((p) => p.id).sort((a, b) => a - b),
            'the ports added',
          );
          assert.equal(console.ignoredControlMessages, 0, 'control messages ignored');
        }),
    },
    {
      name: 'a named port opens, and its stream carries bytes to its far end and back',
      run: () =>
        withConsole(subject, {}, async ({ console }) => {
          const port = await console.waitForPort(expected.echoPort, { timeoutMs: PORT_WAIT_MS });
          await echoThrough(port.open(), randomBytes(40_000));
        }),
    },
    {
      name: 'port 0 and a named port carry separate streams at the same time',
      run: () =>
        withConsole(subject, {}, async ({ console }) => {
          const port = await console.waitForPort(expected.echoPort, { timeoutMs: PORT_WAIT_MS });
          await console.waitForPort(0, { timeoutMs: PORT_WAIT_MS });
          await Promise.all([
            echoThrough(console.stream, randomBytes(20_000)),
            echoThrough(port.open(), randomBytes(20_000)),
          ]);
        }),
    },
    {
      name: 'a port closed (PORT_OPEN 0) and opened again carries bytes again',
      run: () =>
        withConsole(subject, {}, async ({ console }) => {
          const port = await console.waitForPort(expected.echoPort, { timeoutMs: PORT_WAIT_MS });
          const first = port.open();
          await echoThrough(first, randomBytes(5_000));
          port.close();
          assert.equal(first.destroyed, true, 'the first stream is destroyed by close()');
          assert.equal(port.stream, undefined);
          await new Promise((resolve) => setTimeout(resolve, 100));
          await echoThrough(port.open(), randomBytes(5_000));
        }),
    },
  ];
}
