import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { VirtioNet, VirtioNetOptions } from '../../../lib/devices';
import type { ContractCase } from './contract';

/** The other end of the wire. */
export interface NetPeer {
  /** Puts a frame on the wire towards the driver. */
  send(frame: Buffer): void;
  /** Resolves with the next `count` frames the driver sent since open. */
  received(count: number): Promise<Buffer[]>;
}

export interface NetSubject {
  readonly label: string;
  open(options?: Partial<VirtioNetOptions>): Promise<NetHandle>;
}

export interface NetHandle {
  readonly net: VirtioNet;
  readonly peer: NetPeer;
  close(): void;
}

async function withNet(
  subject: NetSubject,
  options: Partial<VirtioNetOptions>,
  body: (h: NetHandle) => Promise<void>,
): Promise<void> {
  const handle = await subject.open(options);
  try {
    await body(handle);
  } finally {
    handle.close();
  }
}

/** An Ethernet frame to `dst` from `src` with an experimental EtherType and a numbered payload. */
export function testFrame(dst: Buffer, src: Buffer, n: number, payload = 100): Buffer {
  const frame = Buffer.alloc(14 + payload);
  dst.copy(frame, 0);
  src.copy(frame, 6);
  frame.writeUInt16BE(0x88b5, 12); // IEEE local experimental EtherType
  frame.writeUInt32BE(n, 14);
  randomBytes(payload - 4).copy(frame, 18);
  return frame;
}

const BROADCAST = Buffer.alloc(6, 0xff);

/** The virtio-net contract (virtio 1.2 §5.1), first queue pair, no offloads. */
export function netContract(subject: NetSubject): ContractCase[] {
  return [
    {
      name: 'the MAC address is unicast, and the link is up',
      run: () =>
        withNet(subject, {}, async ({ net }) => {
          assert.equal(net.mac.length, 6);
          assert.equal(net.mac[0] & 1, 0, 'a MAC must not be multicast');
          assert.equal(net.linkUp, true);
        }),
    },
    {
      name: 'frames sent reach the wire whole and in order',
      run: () =>
        withNet(subject, {}, async ({ net, peer }) => {
          const frames = Array.from({ length: 50 }, (_, i) => testFrame(BROADCAST, net.mac, i, 60 + i * 25));
          const arrived = peer.received(frames.length);
          await Promise.all(frames.map((f) => net.send(f)));
          const got = await arrived;
          got.forEach((frame, i) =>
            assert.ok(frame.equals(frames[i]), `frame ${i}: ${frame.length} bytes, ${frames[i].length} sent`),
          );
        }),
    },
    {
      name: 'frames from the wire arrive whole and in order, as events and through the iterator',
      run: () =>
        withNet(subject, {}, async ({ net, peer }) => {
          const frames = Array.from({ length: 50 }, (_, i) =>
            testFrame(net.mac, Buffer.from([2, 0, 0, 0, 0, 1]), i, 1500 - 14),
          );
          const events: Buffer[] = [];
          net.events.on('frame', (f: Buffer) => events.push(f));
          for (const f of frames) peer.send(f);
          const iterator = net.frames();
          for (let i = 0; i < frames.length; i++) {
            const { value } = await iterator.next();
            assert.ok(value && value.equals(frames[i]), `frame ${i}`);
          }
          assert.equal(events.length, frames.length);
        }),
    },
    {
      name: 'frames already received are kept for a slow consumer',
      run: () =>
        withNet(subject, { receiveBuffers: 8, maxQueuedFrames: 16 }, async ({ net, peer }) => {
          const frames = Array.from({ length: 16 }, (_, i) => testFrame(net.mac, Buffer.from([2, 0, 0, 0, 0, 1]), i));
          for (const f of frames) peer.send(f);
          await new Promise((resolve) => setTimeout(resolve, 300));
          const iterator = net.frames();
          for (let i = 0; i < frames.length; i++) {
            const { value } = await iterator.next();
            assert.ok(value && value.equals(frames[i]), `frame ${i}`);
          }
        }),
    },
    {
      name: 'frames of a bad size are refused before anything is sent',
      run: () =>
        withNet(subject, {}, async ({ net }) => {
          await assert.rejects(net.send(Buffer.alloc(10)), RangeError);
          await assert.rejects(net.send(Buffer.alloc(1519)), RangeError);
        }),
    },
  ];
}
