/**
 * Runs in the lab guest: checksum offload both ways and several queue pairs
 * (VIRTIO_NET_F_CSUM, GUEST_CSUM, MQ; virtio 1.2 §5.1.6.2, §5.1.6.4.1,
 * §5.1.6.5.5) with the guest kernel's UDP echo server (udp-echo.js on
 * 10.0.0.1) at the far end of a host bridge.
 *
 * Our UDP datagrams leave with only the pseudo-header sum in their checksum
 * field and a NEEDS_CSUM header. The kernel's NIC is given no GUEST_CSUM,
 * so the host completes the sum before the frame reaches it and the
 * kernel checks it in software: only a correct header gets an answer. One
 * datagram has a wrong seed on purpose: it must go unanswered and show up
 * in the kernel's UDP InCsumErrors. The kernel's NIC has CSUM, so the
 * echoes arrive with NEEDS_CSUM; we complete them (completeChecksum) and
 * verify them. With MQ, flows go out on every pair after MQ_VQ_PAIRS_SET;
 * the multi-queue tap steers each flow's answers back to its pair.
 *
 *   node scripts/lab/guest/net-offload.js [/dev/uioN [queue-pairs]]
 */
import { readFileSync } from 'node:fs';
import { VirtioNet, completeChecksum, type ReceivedFrame } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { NetFeature, hasFeature, netTransmitQueue } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import {
  ETH_IPV4,
  IP_UDP,
  L4_AT,
  PEER_IP,
  arpRequest,
  ethernet,
  findNet,
  handleArp,
  udpChecksumValid,
  udpPartial,
} from './net-frames';
import { report, runMain } from './report';

const FLOWS = 16;
const PER_FLOW = 4;
const ECHO_PORT = 7;
const BAD_PORT = 4999;
const FIRST_PORT = 5000;
/** The UDP checksum field's place in a frame, from the transport header (CSUM's csum_start). */
const UDP_CHECKSUM = { start: L4_AT, offset: 6 };

/** The kernel's UDP InCsumErrors (/proc/net/snmp). */
function udpChecksumErrors(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf('InCsumErrors')]);
}

async function main(): Promise<void> {
  const ours = findNet(process.argv[2]);
  const memory = DmaPool.hugetlb();
  const net = VirtioNet.open(openTransport(ours.spec as UioDeviceSpec), {
    memory,
    queuePairs: Number(process.argv[3] ?? 1),
  });
  const result = {
    kind: 'net-offload',
    device: (ours.spec as UioDeviceSpec).device.devicePath,
    features: net.features.toString(16),
    csum: hasFeature(net.features, NetFeature.CSUM),
    guestCsum: hasFeature(net.features, NetFeature.GUEST_CSUM),
    pairs: net.queuePairs,
    sent: FLOWS * PER_FLOW,
    replies: 0,
    badReplies: 0,
    rxNeedsCsum: 0,
    rxDataValid: 0,
    rxChecksumGood: 0,
    rxByPair: new Array<number>(net.queuePairs).fill(0),
    /** Echoes that came in on the pair their flow went out on. */
    rxOnSendingPair: 0,
    txByPair: new Array<number>(net.queuePairs).fill(0),
    kernelCsumErrors: 0,
    dropped: 0,
  };
  let peerMac: Buffer | undefined;
  let settle: () => void = () => undefined;
  const answered = new Set<string>();
  net.events.on('frame', (frame: Buffer, info: ReceivedFrame) => {
    if (handleArp(net, frame, (mac) => ((peerMac = mac), settle()))) return;
    const isEcho =
      frame.length >= 42 &&
      frame.readUInt16BE(12) === ETH_IPV4 &&
      frame[23] === IP_UDP &&
      frame.subarray(26, 30).equals(PEER_IP) &&
      frame.readUInt16BE(L4_AT) === ECHO_PORT;
    if (!isEcho) return;
    const port = frame.readUInt16BE(L4_AT + 2);
    if (port === BAD_PORT) result.badReplies++;
    result.rxByPair[info.pair]++;
    if (port !== BAD_PORT && info.pair === (port - FIRST_PORT) % net.queuePairs) result.rxOnSendingPair++;
    if (info.checksumValid) result.rxDataValid++;
    if (info.needsChecksum) {
      result.rxNeedsCsum++;
      completeChecksum(frame, info.needsChecksum);
    }
    if (udpChecksumValid(frame)) result.rxChecksumGood++;
    answered.add(`${port}/${frame.subarray(L4_AT + 8).toString()}`);
    if (answered.size === result.sent) settle();
  });
  const timeout = (ms: number, what: string): Promise<never> =>
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref());
  const errorsBefore = udpChecksumErrors();
  try {
    const arpReply = new Promise<void>((resolve) => (settle = resolve));
    await net.send(arpRequest(net.mac));
    await Promise.race([arpReply, timeout(20_000, 'the ARP reply')]);
    const send = (port: number, text: string, pair: number, seedError = 0): Promise<void> =>
      net.send(ethernet(peerMac!, net.mac, ETH_IPV4, udpPartial(port, port, ECHO_PORT, Buffer.from(text), seedError)), {
        checksum: UDP_CHECKSUM,
        pair,
      });
    // The wrong seed first: its answer, if the kernel let it through, would come before the others'.
    await send(BAD_PORT, 'bad', 0, 1);
    const echoed = new Promise<void>((resolve) => (settle = resolve));
    const sends: Promise<void>[] = [];
    for (let round = 0; round < PER_FLOW; round++)
      for (let flow = 0; flow < FLOWS; flow++)
        sends.push(send(FIRST_PORT + flow, `flow ${flow} datagram ${round}`, flow % net.queuePairs));
    await Promise.all(sends);
    await Promise.race([echoed, timeout(30_000, `${result.sent} echoes (${answered.size} came)`)]);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // room for a late answer to the bad one
  } finally {
    result.replies = answered.size;
    result.kernelCsumErrors = udpChecksumErrors() - errorsBefore;
    for (let pair = 0; pair < net.queuePairs; pair++)
      result.txByPair[pair] = net.queueStats(netTransmitQueue(pair)).completed;
    result.dropped = net.droppedFrames;
    report(result);
    net.close();
    memory.close();
  }
}

runMain(main);
