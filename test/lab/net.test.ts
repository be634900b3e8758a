/**
 * virtio-net in the lab against the guest kernel's network stack (virtio
 * 1.2 §5.1): our driver on one NIC, the kernel's virtio_net on another,
 * the two joined outside the guest.
 *
 * - Version 1: both on a QEMU hub (no vnet header, so no offloads).
 * - Version 2: three NICs on taps in a host bridge, inside a network
 *   namespace this file makes (root, /dev/net/tun, iproute2): ours on a
 *   split ring and on a packed one, each with a 2-queue tap (MQ) and the
 *   checksum offloads; the kernel's between them, given CSUM but not
 *   GUEST_CSUM, so it checks our checksums in software.
 *
 * On each of our NICs net-peer.js pings (MTU 9000, frames spanning receive
 * buffers, the control queue) and, on the taps, net-offload.js sends UDP
 * with checksum offload on both pairs to the kernel's UDP echo server.
 */
import {
  createLabNetwork,
  kernelDriverCommands,
  labNetworkUnavailable,
  prepareLab,
  runLab,
  tapNetdev,
} from '../support/lab-runner';
import type { LabRun } from '../support/lab-runner';
import { describeIf } from '../support/requirements';

const lab = prepareLab('arm64');
const network = labNetworkUnavailable();
/** The kernel's NIC in every boot: the second device (a003c00), eth0 with 10.0.0.1/24. */
const KERNEL_NIC = 'a003c00.virtio_mmio';
/** QEMU 7.2's virtio-net properties for GUEST_CSUM and the receive offloads that need it (§5.1.3.1). */
const KERNEL_NIC_RECEIVE_OFFLOADS_OFF = ['csum', 'tso4', 'tso6', 'ecn', 'ufo'].map((f) => `guest_${f}=off`).join(',');

type Result = Record<string, number | string | boolean | number[]>;
const resultsOf = (run: () => LabRun, kind: string, device: string): Result => {
  const found = run().results.find((r) => r.kind === kind && r.device === device) as Result | undefined;
  if (!found) throw new Error(`no '${kind}' result for ${device}; console:\n${run().console.slice(-4000)}`);
  return found;
};

/** Shell lines that give the kernel the NIC at KERNEL_NIC as eth0, mtu 9000, 10.0.0.1/24. */
const kernelNic = (): string[] => [
  ...kernelDriverCommands(KERNEL_NIC, ['failover', 'net_failover', 'virtio_net']),
  'ip link set eth0 mtu 9000 up',
  'ip addr add 10.0.0.1/24 dev eth0',
];

/** net-peer.js's checks on `device` (ARP and pings, MTU 9000 spanning, the control queue). */
function peerChecks(run: () => LabRun, device: string): void {
  test("the kernel's ARP answers ours, and it answers our pings", () => {
    const net = resultsOf(run, 'net', device);
    expect(net.linkUp).toBe(true);
    expect(net.peerMac).toMatch(/^[0-9a-f]{12}$/);
    expect(net.peerMac).not.toBe(net.mac);
    expect(net.replies).toBe(net.pings);
  });

  test('VIRTIO_NET_F_MTU 9000: near-mtu replies span several 1024-byte receive buffers and arrive whole', () => {
    const net = resultsOf(run, 'net', device);
    expect(net.mtu).toBe(9000);
    expect(net.bigPings).toBe(5);
    expect({ bigReplies: net.bigReplies, dropped: net.dropped }).toEqual({ bigReplies: 5, dropped: 0 });
    expect(net.largestFrameIn).toBe(9000 - 100 + 14);
  });

  test('the control queue: promiscuous off, MAC_ADDR_SET acked by QEMU; the kernel answers the new MAC', () => {
    const net = resultsOf(run, 'net', device);
    expect(net.control).toBe('ok');
    expect(net.newMac).toBe('0200000a0b0c');
    expect(net.newMacReplies).toBe(5);
  });
}

/** The CLI's selftest --strict on `device`, run after the programs let it go. */
function cliCheck(run: () => LabRun, version: number): void {
  test('the CLI: selftest --strict passes on our NIC, link up, with no MUST rule broken', () => {
    const cli = run().results.find((r) => r.kind === 'cli') as { status: number; stderr: string; stdout: string };
    expect(cli).toBeDefined();
    const report = JSON.parse(cli.stdout) as {
      ok: boolean;
      deviceId: number;
      version: number;
      steps: { step: string; ok: boolean; detail?: string }[];
      strict: { violations: { level: string }[] };
    };
    expect({ status: cli.status, stderr: cli.stderr, failed: report.steps.filter((s) => !s.ok) }).toEqual({
      status: 0,
      stderr: '',
      failed: [],
    });
    expect(report).toMatchObject({ ok: true, deviceId: 1, version });
    expect(report.steps.find((s) => s.step === 'link status')?.detail).toMatch(/^MAC [0-9a-f:]{17}; link up$/);
    expect(report.strict.violations.filter((v) => v.level === 'must')).toEqual([]);
  });
}

const boot = async (options: object): Promise<LabRun> => {
  const run = await runLab({ timeoutMs: 240_000, ...options });
  if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
  return run;
};

describeIf(lab.ok, lab.reason, 'virtio-net against the guest kernel, Version 1 (a QEMU hub)', () => {
  // Two NICs on one QEMU hub: the first (/dev/uio31) is ours, the second the kernel's.
  let run: LabRun;
  beforeAll(async () => {
    run = await boot({
      // host_mtu offers VIRTIO_NET_F_MTU to both; QEMU's defaults add MRG_RXBUF, CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR.
      devices: ['virtio-net-device,netdev=n0,host_mtu=9000', 'virtio-net-device,netdev=n1,host_mtu=9000'],
      extraArgs: ['-netdev', 'hubport,id=n0,hubid=0', '-netdev', 'hubport,id=n1,hubid=0'],
      legacy: true,
      command: [
        'set -e',
        ...kernelNic(),
        'node scripts/lab/guest/net-peer.js /dev/uio31',
        'node scripts/lab/guest/cli-report.js selftest /dev/uio31 --strict --json',
      ].join('\n'),
    });
  }, 300_000);
  peerChecks(() => run, '/dev/uio31');
  cliCheck(() => run, 1);
});

const NICS = [
  ['split', '/dev/uio31'],
  ['packed', '/dev/uio29'],
] as const;

describeIf(
  lab.ok && network === '',
  lab.reason || `no lab network: ${network}`,
  'virtio-net against the guest kernel, Version 2 (taps on a host bridge in a network namespace)',
  () => {
    let run: LabRun;
    let net: { name: string; remove(): void } | undefined;
    beforeAll(async () => {
      net = createLabNetwork({
        taps: [{ name: 'tap0', queues: 2 }, { name: 'tap1' }, { name: 'tap2', queues: 2 }],
        mtu: 9000,
      });
      run = await boot({
        netns: net.name,
        devices: [
          // Ours, split ring: /dev/uio31. QEMU offers CSUM and GUEST_CSUM only with a vnet header (the tap's).
          'virtio-net-device,netdev=n0,host_mtu=9000,mq=on',
          // The kernel's: CSUM (its UDP leaves with a partial checksum) but no GUEST_CSUM (and so none of the
          // receive offloads that need it): the bridge completes our partial checksums and the kernel checks them.
          `virtio-net-device,netdev=n1,host_mtu=9000,${KERNEL_NIC_RECEIVE_OFFLOADS_OFF}`,
          // Ours, packed ring: /dev/uio29.
          'virtio-net-device,netdev=n2,host_mtu=9000,mq=on,packed=on',
        ],
        extraArgs: [...tapNetdev('n0', 'tap0', 2), ...tapNetdev('n1', 'tap1'), ...tapNetdev('n2', 'tap2', 2)],
        command: [
          'set -e',
          ...kernelNic(),
          'node scripts/lab/guest/udp-echo.js /tmp/udp-echo.ready &',
          'while [ ! -e /tmp/udp-echo.ready ]; do sleep 0.2; done',
          ...NICS.flatMap(([, device]) => [
            `node scripts/lab/guest/net-offload.js ${device} 2`,
            `node scripts/lab/guest/net-peer.js ${device}`,
          ]),
          'node scripts/lab/guest/cli-report.js selftest /dev/uio31 --strict --json',
        ].join('\n'),
      });
    }, 300_000);
    afterAll(() => net?.remove());

    describe.each(NICS)('our NIC on a %s ring (%s)', (ring, device) => {
      peerChecks(() => run, device);

      test('CSUM: every datagram sent with only its pseudo-header sum gets an echo; a wrong seed is refused', () => {
        const offload = resultsOf(() => run, 'net-offload', device);
        expect(offload).toMatchObject({ csum: true, pairs: 2, replies: offload.sent, badReplies: 0 });
        // The kernel verified the sums the bridge completed: the wrong seed alone failed.
        expect(offload.kernelCsumErrors).toBe(1);
        expect(offload.features).toMatch(ring === 'packed' ? /^105/ : /^101/);
      });

      test('GUEST_CSUM: the echoes arrive with NEEDS_CSUM; completed, every checksum verifies', () => {
        const offload = resultsOf(() => run, 'net-offload', device);
        expect(offload.guestCsum).toBe(true);
        expect(offload).toMatchObject({
          rxNeedsCsum: offload.replies,
          rxChecksumGood: offload.replies,
          dropped: 0,
        });
      });

      test('MQ: after MQ_VQ_PAIRS_SET both pairs send; each flow is answered on the pair it went out on', () => {
        const offload = resultsOf(() => run, 'net-offload', device);
        const [tx0, tx1] = offload.txByPair as number[];
        const [rx0, rx1] = offload.rxByPair as number[];
        // Half the flows went out on each pair; pair 0 also sent the wrong-seed datagram and ARP.
        expect(tx1).toBe((offload.sent as number) / 2);
        expect(tx0).toBeGreaterThanOrEqual((offload.sent as number) / 2 + 2);
        expect(rx0 + rx1).toBe(offload.replies);
        expect(Math.min(rx0, rx1)).toBeGreaterThan(0);
        // The tap's automatic steering sends a flow's answers to the queue it last sent on.
        expect(offload.rxOnSendingPair).toBe(offload.replies);
      });
    });
    cliCheck(() => run, 2);
  },
);
