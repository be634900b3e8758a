/**
 * Runs in the lab guest, with the guest kernel's virtio_net driving
 * another NIC on the same QEMU hub or host bridge (eth0, 10.0.0.1/24): our
 * VirtioNet (on /dev/uioN if given, else the first on UIO) asks
 * the kernel's ARP for its address and pings it, answering the kernel's own
 * ARP requests — frames both ways with a network stack we did not write.
 * With VIRTIO_NET_F_MTU (host_mtu) it also pings with frames near the mtu
 * into 1024-byte receive buffers, so each reply spans several (MRG_RXBUF),
 * and with the control queue it turns promiscuous mode off, changes its
 * MAC (MAC_ADDR_SET) and pings again from the new address: replies arrive
 * only if QEMU took the new address (it filters by MAC when not promiscuous).
 *
 *   node scripts/lab/guest/net-peer.js [/dev/uioN]
 */
import { VirtioNet } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { report, runMain } from './report';
import { ETH_IPV4, arpRequest, ethernet, findNet, handleArp, ping } from './net-frames';

async function main(): Promise<void> {
  const ours = findNet(process.argv[2]);
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
    const arpKind = handleArp(net, frame, (mac) => {
      peerMac = mac;
      settle();
    });
    if (arpKind === 'request') {
      result.arpRequestsAnswered++;
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
    await net.send(arpRequest(net.mac));
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
