import { NET_MQ_PAIRS_MIN, NetCtrl, NetCtrlAck } from '../spec';
import type { SimRequest } from './sim-model';

/** What the control queue has set (virtio 1.2 §5.1.6.5). */
export interface NetControlState {
  promiscuous: boolean;
  allMulticast: boolean;
  /** Queue pairs the device uses (VQ_PAIRS_SET; 1 until then). */
  activePairs: number;
}

/**
 * The device side of the control queue (§5.1.6.5): reads class, command
 * and data, applies what it knows, writes VIRTIO_NET_OK or _ERR into the
 * ack byte. `ackOverride` makes a lying device: a number is written as
 * the ack whatever happened, -1 writes nothing (used len 0).
 */
export class NetModelControl {
  readonly state: NetControlState = { promiscuous: false, allMulticast: false, activePairs: 1 };
  /** Commands seen, as [class, command, data]. */
  readonly commands: [number, number, Buffer][] = [];
  ackOverride?: number;

  constructor(
    private readonly maxPairs: number,
    private readonly setMac: (mac: Buffer) => void,
    private readonly has: (cls: number) => boolean,
  ) {}

  reset(): void {
    Object.assign(this.state, { promiscuous: false, allMulticast: false, activePairs: 1 });
  }

  handle(request: SimRequest): number {
    const out = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
    const ackAt = request.writable[0];
    if (out.length < 2 || !ackAt || ackAt.length < 1) return 0;
    const [cls, command] = out;
    const data = out.subarray(2);
    this.commands.push([cls, command, Buffer.from(data)]);
    const ok = this.has(cls) && this.apply(cls, command, data);
    if (this.ackOverride === -1) return 0;
    ackAt[0] = this.ackOverride ?? (ok ? NetCtrlAck.OK : NetCtrlAck.ERR);
    return 1;
  }

  private apply(cls: number, command: number, data: Buffer): boolean {
    if (cls === NetCtrl.RX && (command === NetCtrl.RX_PROMISC || command === NetCtrl.RX_ALLMULTI)) {
      if (data.length !== 1) return false;
      this.state[command === NetCtrl.RX_PROMISC ? 'promiscuous' : 'allMulticast'] = data[0] !== 0;
      return true;
    }
    if (cls === NetCtrl.MAC && command === NetCtrl.MAC_ADDR_SET) {
      if (data.length !== 6) return false;
      this.setMac(data);
      return true;
    }
    if (cls === NetCtrl.MQ && command === NetCtrl.MQ_VQ_PAIRS_SET) {
      // §5.1.6.5.5: the device refuses a count outside 1..max_virtqueue_pairs.
      const pairs = data.length === 2 ? data.readUInt16LE(0) : 0;
      if (pairs < NET_MQ_PAIRS_MIN || pairs > this.maxPairs) return false;
      this.state.activePairs = pairs;
      return true;
    }
    return false;
  }
}
