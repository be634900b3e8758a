import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { VirtioConsole, VirtioConsoleOptions } from '../../lib/devices';
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
  /** The far end, when the subject can drive it (not for echo peers). */
  readonly peer?: ConsolePeer;
  close(): void;
}

function peerOf(handle: ConsoleHandle): ConsolePeer {
  assert.ok(handle.peer, 'this subject has no drivable peer (consoleContract needs one; use consoleEchoContract)');
  return handle.peer;
}

async function withConsole(subject: ConsoleSubject, options: Partial<VirtioConsoleOptions>, body: (h: ConsoleHandle) => Promise<void>): Promise<void> {
  const handle = await subject.open(options);
  try {
    await body(handle);
  } finally {
    handle.close();
  }
}

/** Reads exactly `bytes` bytes from the stream (or fails if it ends first). */
async function readExactly(stream: NodeJS.ReadableStream, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (total >= bytes) break;
  }
  const all = Buffer.concat(chunks);
  assert.ok(all.length >= bytes, `the stream ended after ${all.length} of ${bytes} bytes`);
  return all.subarray(0, bytes);
}

/** The virtio-console contract (virtio 1.2 §5.3, port 0). */
export function consoleContract(subject: ConsoleSubject): ContractCase[] {
  return [
    {
      name: 'bytes written to the stream reach the other end in order',
      run: () =>
        withConsole(subject, { transmitBufferBytes: 1000 }, async (handle) => {
          const { console } = handle;
          const peer = peerOf(handle);
          const data = randomBytes(50_000);
          for (let at = 0; at < data.length; at += 7000) console.stream.write(data.subarray(at, at + 7000));
          sameBytes(await peer.received(data.length), data, 'transmitted');
        }),
    },
    {
      name: 'bytes from the other end arrive on the stream in order',
      run: () =>
        withConsole(subject, {}, async (handle) => {
          const { console } = handle;
          const peer = peerOf(handle);
          const data = randomBytes(50_000);
          peer.send(data);
          sameBytes(await readExactly(console.stream, data.length), data, 'received');
        }),
    },
    {
      name: 'a reader that stops reading loses nothing (receive buffers are held back, then re-posted)',
      run: () =>
        withConsole(subject, { receiveBuffers: 4, receiveBufferBytes: 512 }, async (handle) => {
          const { console } = handle;
          const peer = peerOf(handle);
          console.stream.pause();
          const data = randomBytes(200_000);
          peer.send(data);
          await new Promise((resolve) => setTimeout(resolve, 200));
          sameBytes(await readExactly(console.stream, data.length), data, 'received after a pause');
        }),
    },
    {
      name: 'both directions at once',
      run: () =>
        withConsole(subject, {}, async (handle) => {
          const { console } = handle;
          const peer = peerOf(handle);
          const out = randomBytes(20_000);
          const back = randomBytes(20_000);
          console.stream.write(out);
          peer.send(back);
          const [sent, got] = await Promise.all([peer.received(out.length), readExactly(console.stream, back.length)]);
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
        withConsole(subject, {}, async ({ console }) => {
          const data = randomBytes(30_000);
          const back = readExactly(console.stream, data.length);
          for (let at = 0; at < data.length; at += 3000) console.stream.write(data.subarray(at, at + 3000));
          sameBytes(await back, data, 'echoed');
        }),
    },
    {
      name: 'many small writes come back whole',
      run: () =>
        withConsole(subject, {}, async ({ console }) => {
          const lines = Array.from({ length: 200 }, (_, i) => Buffer.from(`line ${i}\n`));
          const total = lines.reduce((n, l) => n + l.length, 0);
          const back = readExactly(console.stream, total);
          for (const line of lines) console.stream.write(line);
          sameBytes(await back, Buffer.concat(lines), 'echoed lines');
        }),
    },
    {
      name: 'a paused reader loses nothing of the echo',
      run: () =>
        withConsole(subject, { receiveBuffers: 4, receiveBufferBytes: 512 }, async ({ console }) => {
          console.stream.pause();
          const data = randomBytes(64_000);
          console.stream.write(data);
          await new Promise((resolve) => setTimeout(resolve, 300));
          sameBytes(await readExactly(console.stream, data.length), data, 'echoed after a pause');
        }),
    },
  ];
}
