/**
 * The virtio-net contract on the sim, for both versions and the packed
 * ring, with and without MRG_RXBUF, and with every feature the driver
 * knows (MTU, CSUM, GUEST_CSUM, control queue, two pairs, frames spanning
 * 256-byte receive buffers).
 */
import { VirtioNet, type VirtioNetOptions } from '../../lib/devices';
import { NetModel, type NetModelOptions } from '../../lib/sim';
import { netContract, testFrame, type NetSubject } from '../support/contracts/net-contract';
import { simRig, turns, SIM_VARIANTS, driverOnSim } from '../support/sim-rig';

describe.each(SIM_VARIANTS)('virtio-net on a %s sim', (_label, version) => {
  const configs: [string, NetModelOptions, Partial<VirtioNetOptions>][] = [
    ['mergeable receive buffers', { mergeable: true }, {}],
    ['no mergeable receive buffers', { mergeable: false }, {}],
    [
      'every feature, 256-byte buffers, two pairs',
      { mtu: 1500, csum: true, guestCsum: true, maxPairs: 2 },
      { queuePairs: 2, receiveBufferBytes: 256 },
    ],
  ];
  describe.each(configs)('%s', (_name, modelOptions, driverOptions) => {
    const violations: unknown[] = [];
    const subject: NetSubject = {
      label: `sim v${version}`,
      async open(options) {
        const model = new NetModel(modelOptions);
        const { driver: net, close } = driverOnSim(
          version,
          model,
          (r) => VirtioNet.open(r.transport, { memory: r.pool, ...driverOptions, ...options }),
          violations,
        );
        let seen = 0;
        return {
          net,
          peer: {
            send: (frame) => model.inject(frame),
            async received(count) {
              while (model.sent.length < seen + count) await turns(1);
              const frames = model.sent.slice(seen, seen + count);
              seen += count;
              return frames;
            },
          },
          close,
        };
      },
    };
    afterEach(() => expect(violations.splice(0)).toEqual([]));
    test.each(netContract(subject).map((c) => [c.name, c] as const))('%s', async (_n, c) => {
      await c.run();
    });
  });

  test('two devices on one wire talk to each other; a link change is an event', async () => {
    const a = new NetModel({ mac: Buffer.from([2, 0, 0, 0, 0, 0xa]) });
    const b = new NetModel({ mac: Buffer.from([2, 0, 0, 0, 0, 0xb]) });
    NetModel.pair(a, b);
    const ra = simRig(version, a);
    const rb = simRig(version, b);
    const na = VirtioNet.open(ra.transport, { memory: ra.pool });
    const nb = VirtioNet.open(rb.transport, { memory: rb.pool });
    try {
      const frame = testFrame(nb.mac, na.mac, 1);
      await na.send(frame);
      const { value } = await nb.frames().next();
      expect(value).toEqual(frame);
      const link = new Promise((resolve) => na.events.once('link', resolve));
      ra.sim.raiseConfigChange(() => a.setLink(false));
      await expect(link).resolves.toBe(false);
      expect(na.linkUp).toBe(false);
    } finally {
      na.close();
      nb.close();
      expect([...ra.close(), ...rb.close()]).toEqual([]);
    }
  });

  test('without the MAC feature the address is random, unicast and locally administered', () => {
    const rig = simRig(version, new NetModel({ mac: null }));
    const net = VirtioNet.open(rig.transport, { memory: rig.pool });
    try {
      expect(net.mac[0] & 0x03).toBe(0x02);
    } finally {
      net.close();
      expect(rig.close()).toEqual([]);
    }
  });
});
