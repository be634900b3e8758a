/**
 * Frames the lab's virtio-net programs build and read: Ethernet, ARP
 * (RFC 826), IPv4 (RFC 791) with ICMP echo (RFC 792) or UDP (RFC 768).
 * The guest kernel's NIC is PEER_IP; ours is OUR_IP.
 */
import { DeviceId, internetChecksum, ipv4PseudoHeaderSum } from '../../../lib/spec';
import type { ProbeReport, UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';

export const OUR_IP = Buffer.from([10, 0, 0, 2]);
export const PEER_IP = Buffer.from([10, 0, 0, 1]);
export const BROADCAST = Buffer.alloc(6, 0xff);
export const ETH_ARP = 0x0806;
export const ETH_IPV4 = 0x0800;
export const IP_ICMP = 1;
export const IP_UDP = 17;
/** Where a frame's IPv4 header starts, and its transport header (no IP options). */
export const IP_AT = 14;
export const L4_AT = 34;

export function ethernet(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(14);
  dst.copy(header, 0);
  src.copy(header, 6);
  header.writeUInt16BE(type, 12);
  return Buffer.concat([header, payload]);
}

/** Ethernet/IPv4 ARP, `op` 1 request or 2 reply. */
export function arp(op: number, senderMac: Buffer, senderIp: Buffer, targetMac: Buffer, targetIp: Buffer): Buffer {
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

/** An IPv4 packet from OUR_IP to PEER_IP around `body`, header checksum filled. */
export function ipv4(protocol: number, id: number, body: Buffer): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + body.length, 2);
  ip.writeUInt16BE(id, 4);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = protocol;
  OUR_IP.copy(ip, 12);
  PEER_IP.copy(ip, 16);
  ip.writeUInt16BE(internetChecksum(ip), 10);
  return Buffer.concat([ip, body]);
}

/** An ICMP echo request with `data` bytes of payload, in IPv4. */
export function ping(id: number, seq: number, data = 56): Buffer {
  const icmp = Buffer.alloc(8 + data);
  icmp[0] = 8;
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  for (let i = 8; i < icmp.length; i++) icmp[i] = i & 0xff;
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  return ipv4(IP_ICMP, seq, icmp);
}

/**
 * A UDP datagram in IPv4 whose checksum field holds only the pseudo-header
 * sum (plus `seedError`): complete only once a device sums it (CSUM).
 */
export function udpPartial(id: number, sourcePort: number, destPort: number, data: Buffer, seedError = 0): Buffer {
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(sourcePort, 0);
  udp.writeUInt16BE(destPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  udp.writeUInt16BE((ipv4PseudoHeaderSum(OUR_IP, PEER_IP, IP_UDP, udp.length) + seedError) & 0xffff, 6);
  return ipv4(IP_UDP, id, udp);
}

/** Whether an IPv4 UDP frame's checksum verifies (RFC 768: over pseudo-header and datagram). */
export function udpChecksumValid(frame: Buffer): boolean {
  const length = frame.readUInt16BE(L4_AT + 4);
  if (L4_AT + length > frame.length) return false;
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, IP_AT + 12, IP_AT + 20);
  pseudo[9] = IP_UDP;
  pseudo.writeUInt16BE(length, 10);
  return internetChecksum(Buffer.concat([pseudo, frame.subarray(L4_AT, L4_AT + length)])) === 0;
}

/** What sends an ARP reply: our VirtioNet. */
interface Sender {
  readonly mac: Buffer;
  send(frame: Buffer): Promise<void>;
}

/**
 * The ARP side of OUR_IP: answers requests for it, and hands the sender's
 * MAC of a reply from PEER_IP to `onPeer`. Which it was, or undefined when
 * the frame was not ARP for us.
 */
export function handleArp(net: Sender, frame: Buffer, onPeer: (mac: Buffer) => void): 'request' | 'reply' | undefined {
  if (frame.length < 42 || frame.readUInt16BE(12) !== ETH_ARP) return undefined;
  const op = frame.readUInt16BE(20);
  const senderMac = Buffer.from(frame.subarray(22, 28));
  const senderIp = Buffer.from(frame.subarray(28, 32));
  if (op === 2 && senderIp.equals(PEER_IP)) {
    onPeer(senderMac);
    return 'reply';
  }
  if (op === 1 && frame.subarray(38, 42).equals(OUR_IP)) {
    void net.send(ethernet(senderMac, net.mac, ETH_ARP, arp(2, net.mac, OUR_IP, senderMac, senderIp)));
    return 'request';
  }
  return undefined;
}

/** An ARP request for PEER_IP from `net`. */
export const arpRequest = (mac: Buffer): Buffer =>
  ethernet(BROADCAST, mac, ETH_ARP, arp(1, mac, OUR_IP, Buffer.alloc(6), PEER_IP));

/** The virtio-net transport on UIO at `devicePath`, or the first one there is. */
export function findNet(devicePath?: string): ProbeReport {
  const found = scan().find(
    (r) =>
      r.result?.deviceId === DeviceId.NET &&
      (devicePath === undefined || (r.spec as UioDeviceSpec).device.devicePath === devicePath),
  );
  if (!found) throw new Error(`no virtio-net transport on UIO${devicePath ? ` at ${devicePath}` : ''}`);
  return found;
}
