/**
 * Runs in the lab guest, with the guest kernel's virtio_net driving the
 * other NIC on the same QEMU hub (eth0, 10.0.0.1/24): our VirtioNet asks
 * the kernel's ARP for its address and pings it, answering the kernel's own
 * ARP requests — frames both ways with a network stack we did not write.
 * With VIRTIO_NET_F_MTU (host_mtu) it also pings with frames near the mtu
 * into 1024-byte receive buffers, so each reply spans several (MRG_RXBUF),
 * and with the control queue it turns promiscuous mode off, changes its
 * MAC (MAC_ADDR_SET) and pings again from the new address: replies arrive
 * only if QEMU took the new address (it filters by MAC when not promiscuous).
 */
import { VirtioNet } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

const OUR_IP = Buffer.from([10, 0, 0, 2]);
const PEER_IP = Buffer.from([10, 0, 0, 1]);
const BROADCAST = Buffer.alloc(6, 0xff);
const ETH_ARP = 0x0806;
const ETH_IPV4 = 0x0800;

function ethernet(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(14);
  dst.copy(header, 0);
  src.copy(header, 6);
  header.writeUInt16BE(type, 12);
  return Buffer.concat([header, payload]);
}

/** RFC 826: Ethernet/IPv4 ARP, `op` 1 request or 2 reply. */
function arp(op: number, senderMac: Buffer, senderIp: Buffer, targetMac: Buffer, targetIp: Buffer): Buffer {
  const p = Buffer.alloc(28);
  p.writeUInt16BE(1, 0);
  p.writeUInt16BE(ETH_IPV4, 2);
  p[4] = 6;
  p[5] = 4;
  p.writeUInt16BE(op, 6);
  senderMac.copy(p, 8);
  senderIp.copy(p, 14);
  targetMac.copy(p, 18);
  targetIp.copy(p, 24);
  return p;
}

/** RFC 1071 Internet checksum. */
function checksum(data: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2) sum += data[data.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 ICMP echo request (RFC 792) with `data` bytes of payload. */
function ping(id: number, seq: number, data = 56): Buffer {
  const icmp = Buffer.alloc(8 + data);
  icmp[0] = 8;
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  for (let i = 8; i < icmp.length; i++) icmp[i] = i & 0xff;
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt16BE(seq, 4);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = 1;
  OUR_IP.copy(ip, 12);
  PEER_IP.copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

async function main(): Promise<void> {
  const ours = scan().find((r) => r.result?.deviceId === DeviceId.NET);
  if (!ours) throw new Error('no virtio-net transport left on UIO');
  const memory = DmaPool.hugetlb();
  const net = VirtioNet.open(openTransport(ours.spec as UioDeviceSpec), { memory, receiveBufferBytes: 1024 });
  const result = {
    kind: 'net',
    device: (ours.spec as UioDeviceSpec).device.devicePath,
    mac: net.mac.toString('hex'),
    linkUp: net.linkUp,
    peerMac: '',
    arpRequestsAnswered: 0,
    pings: 5,
    replies: 0,
    framesIn: 0,
    features: net.features.toString(16),
    mtu: net.mtu ?? 0,
    bigPings: 0,
    bigReplies: 0,
    largestFrameIn: 0,
    dropped: 0,
    control: '',
    newMac: '',
    newMacReplies: 0,
  };
  let peerMac: Buffer | undefined;
  let expected = result.pings;
  const replies = new Set<number>();
  let settle: () => void = () => undefined; // resolves what the current step waits for
  net.events.on('frame', (frame: Buffer) => {
    result.framesIn++;
    result.largestFrameIn = Math.max(result.largestFrameIn, frame.length);
    const type = frame.readUInt16BE(12);
    if (type === ETH_ARP && frame.length >= 42) {
      const op = frame.readUInt16BE(20);
      const senderMac = frame.subarray(22, 28);
      const senderIp = frame.subarray(28, 32);
      const targetIp = frame.subarray(38, 42);
      if (op === 2 && senderIp.equals(PEER_IP)) {
        peerMac = Buffer.from(senderMac);
        settle();
      } else if (op === 1 && targetIp.equals(OUR_IP)) {
        result.arpRequestsAnswered++;
        void net.send(
          ethernet(
            Buffer.from(senderMac),
            net.mac,
            ETH_ARP,
            arp(2, net.mac, OUR_IP, Buffer.from(senderMac), Buffer.from(senderIp)),
          ),
        );
      }
    } else if (type === ETH_IPV4 && frame.length >= 42 && frame[23] === 1 && frame[34] === 0) {
      // ICMP echo reply: IP protocol 1, ICMP type 0; sequence number at 14 + 20 + 6.
      replies.add(frame.readUInt16BE(40));
      if (replies.size === expected) settle();
    }
  });
  const timeout = (ms: number, what: string): Promise<never> =>
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref());
  /** Sends `count` pings of `data` bytes from `seq0` and waits until every one was answered. */
  const pingRound = async (seq0: number, count: number, data: number): Promise<void> => {
    expected = replies.size + count;
    const replied = new Promise<void>((resolve) => (settle = resolve));
    for (let seq = seq0; seq < seq0 + count; seq++)
      await net.send(ethernet(peerMac!, net.mac, ETH_IPV4, ping(0x1234, seq, data)));
    await Promise.race([replied, timeout(20_000, `echo replies ${seq0}..${seq0 + count - 1}`)]);
  };
  const arpPeer = async (): Promise<void> => {
    const answered = new Promise<void>((resolve) => (settle = resolve));
    await net.send(ethernet(BROADCAST, net.mac, ETH_ARP, arp(1, net.mac, OUR_IP, Buffer.alloc(6), PEER_IP)));
    await Promise.race([answered, timeout(20_000, 'the ARP reply')]);
  };
  try {
    await arpPeer();
    result.peerMac = peerMac!.toString('hex');
    await pingRound(1, result.pings, 56);
    result.replies = replies.size;
    if (net.mtu !== undefined && net.mtu >= 4000) {
      // IP packets of mtu - 100 bytes: each reply spans several 1024-byte receive buffers.
      result.bigPings = 5;
      await pingRound(100, result.bigPings, net.mtu - 100 - 28);
      result.bigReplies = replies.size - result.replies;
    }
    try {
      await net.setPromiscuous(false);
      await net.setAllMulticast(false);
      await net.setMac(Buffer.from([0x02, 0x00, 0x00, 0x0a, 0x0b, 0x0c]));
      result.control = 'ok';
    } catch (error) {
      result.control = `${(error as { code?: string }).code ?? ''} ${(error as Error).message}`;
    }
    if (result.control === 'ok') {
      result.newMac = net.mac.toString('hex');
      const before = replies.size;
      await arpPeer(); // the kernel learns the new address from our request
      await pingRound(200, 5, 56);
      result.newMacReplies = replies.size - before;
    }
  } finally {
    if (result.replies === 0) result.replies = replies.size;
    result.dropped = net.droppedFrames;
    report(result);
    net.close();
    memory.close();
  }
}

runMain(main);
