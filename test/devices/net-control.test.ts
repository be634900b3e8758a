/**
 * virtio-net's control queue (virtio 1.2 §5.1.6.5) and multiqueue
 * (§5.1.6.5.5, queue layout §5.1.2), on every sim variant.
 */
import { DeviceIoError, ProtocolError, TransportError, UsageError } from '../../lib/errors';
import { NetModel } from '../../lib/sim';
import { NetConfig, NetCtrl, NetFeature, feature, hasFeature } from '../../lib/spec';
import { testFrame } from '../support/contracts/net-contract';
import { SIM_VARIANTS, turns } from '../support/sim-rig';
import { netSim } from '../support/net-sim';

const PEER = Buffer.from([2, 0, 0, 0, 0, 1]);

async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await turns(1);
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

describe.each(SIM_VARIANTS)('virtio-net control queue and MQ on the %s sim', (_label, variant) => {
  const { open, openFails } = netSim(variant);

  test('promiscuous, all-multicast and MAC_ADDR_SET reach the device and are acked', async () => {
    const model = new NetModel({ control: true });
    const net = open(model);
    await net.setPromiscuous(true);
    await net.setAllMulticast(true);
    expect(model.control.state).toMatchObject({ promiscuous: true, allMulticast: true });
    await net.setPromiscuous(false);
    expect(model.control.state.promiscuous).toBe(false);
    const mac = Buffer.from([2, 0x11, 0x22, 0x33, 0x44, 0x55]);
    await net.setMac(mac);
    expect(net.mac).toEqual(mac);
    expect(Buffer.from(model.config.subarray(NetConfig.mac, NetConfig.mac + 6))).toEqual(mac);
    expect(model.control.commands.map(([c, cmd]) => [c, cmd])).toEqual([
      [NetCtrl.RX, NetCtrl.RX_PROMISC],
      [NetCtrl.RX, NetCtrl.RX_ALLMULTI],
      [NetCtrl.RX, NetCtrl.RX_PROMISC],
      [NetCtrl.MAC, NetCtrl.MAC_ADDR_SET],
    ]);
  });

  test.each([
    ['VIRTIO_NET_ERR', 1, DeviceIoError, 'ERR_VIRTIO_IO'],
    ['an ack of 7', 7, ProtocolError, 'ERR_VIRTIO_PROTOCOL'],
    ['no ack written', -1, ProtocolError, 'ERR_VIRTIO_PROTOCOL'],
  ])('a device answering %s fails the command typed; the MAC stays; the queue goes on', async (_n, ack, type, code) => {
    const model = new NetModel({ control: true });
    const net = open(model);
    const before = Buffer.from(net.mac);
    model.control.ackOverride = ack;
    const error = await net.setMac(Buffer.from([2, 9, 9, 9, 9, 9])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(type);
    expect(error).toMatchObject({ code });
    expect(net.mac).toEqual(before);
    model.control.ackOverride = undefined;
    await net.setPromiscuous(true);
    expect(model.control.state.promiscuous).toBe(true);
  });

  test('without the control queue the commands are UsageErrors', async () => {
    const net = open(new NetModel());
    await expect(net.setPromiscuous(true)).rejects.toThrow(UsageError);
    await expect(net.setMac(Buffer.alloc(6, 2))).rejects.toThrow(UsageError);
    await expect(net.send(Buffer.alloc(60), { pair: 1 })).rejects.toThrow(RangeError);
  });

  test('MQ: VQ_PAIRS_SET for the pairs asked; transmit queue per send; every receive queue delivers', async () => {
    const model = new NetModel({ maxPairs: 4 });
    const net = open(model, { queuePairs: 4, receiveBuffers: 8 });
    expect(net.queuePairs).toBe(4);
    const frames = [0, 1, 2, 3].map((pair) => testFrame(PEER, net.mac, pair));
    for (const pair of [3, 0, 2, 1]) await net.send(frames[pair], { pair });
    expect(model.control.commands).toEqual([[NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, Buffer.from([4, 0])]]);
    expect(model.control.state.activePairs).toBe(4);
    expect(model.sentPairs).toEqual([3, 0, 2, 1]);
    expect(model.sent).toEqual([frames[3], frames[0], frames[2], frames[1]]);
    await until(() => model.postedReceives === 32, 'receive buffers on all four queues');
    const iterator = net.received();
    for (const pair of [2, 3, 0, 1]) {
      const frame = testFrame(net.mac, PEER, 10 + pair);
      model.inject(frame, { pair });
      expect((await iterator.next()).value).toMatchObject({ frame, pair });
    }
    await expect(net.send(frames[0], { pair: 4 })).rejects.toThrow(RangeError);
  });

  test('MQ offered, one pair used: the control queue is at 2N (N = max_virtqueue_pairs)', async () => {
    const model = new NetModel({ maxPairs: 3 });
    const net = open(model);
    expect(net.queuePairs).toBe(1);
    await net.setAllMulticast(true);
    expect(model.control.state.allMulticast).toBe(true);
    expect(model.control.commands).toHaveLength(1); // no VQ_PAIRS_SET for one pair
  });

  test('MQ: a VQ_PAIRS_SET the device refuses fails sends past the first pair; the first pair works', async () => {
    const model = new NetModel({ maxPairs: 2 });
    model.control.ackOverride = 1;
    const net = open(model, { queuePairs: 2 });
    await expect(net.send(testFrame(PEER, net.mac, 1), { pair: 1 })).rejects.toThrow(DeviceIoError);
    await net.send(testFrame(PEER, net.mac, 2));
    expect(model.sentPairs).toEqual([0]);
  });

  test('§2.2.1: without CTRL_VQ accepted, MQ, CTRL_RX and CTRL_MAC_ADDR are not accepted either', async () => {
    const model = new NetModel({ maxPairs: 2 });
    const net = open(model, { excludeFeatures: feature(NetFeature.CTRL_VQ) });
    const accepted = net.features; // what the driver wrote to DriverFeatures
    for (const bit of [NetFeature.CTRL_VQ, NetFeature.CTRL_RX, NetFeature.MQ, NetFeature.CTRL_MAC_ADDR])
      expect(hasFeature(accepted, bit)).toBe(false);
    expect(hasFeature(accepted, NetFeature.MRG_RXBUF)).toBe(true);
    await expect(net.setPromiscuous(true)).rejects.toThrow(UsageError);
    await net.send(testFrame(PEER, net.mac, 1));
    expect(model.sent).toHaveLength(1);
  });

  test.each([
    ['more pairs than max_virtqueue_pairs', { maxPairs: 2 }, { queuePairs: 3 }, RangeError],
    ['two pairs without MQ', { control: true }, { queuePairs: 2 }, RangeError],
  ])('open refuses %s', (_n, modelOptions, options, type) => {
    expect(openFails(modelOptions, options)).toThrow(type);
  });

  test.each([0, 0x8001])('max_virtqueue_pairs %s fails open with CONFIG_INVALID', (pairs) => {
    expect(openFails({ maxPairs: pairs })).toThrow(expect.objectContaining({ code: TransportError.CONFIG_INVALID }));
  });
});
