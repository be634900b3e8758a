/**
 * virtio-input on QEMU's own devices: virtio-keyboard-device and
 * virtio-tablet-device on the arm64 lab, Version 2 and Version 1 (legacy),
 * one boot each. The guest (scripts/lab/guest/input-check.ts) opens both
 * with VirtioInput and reports their config; once it says it is ready the
 * host sends a key tap and a tablet position through QMP input-send-event,
 * and the guest reports what arrived on each eventq, then what an LED event
 * on statusq did. Needs the lab (scripts/lab/prepare.sh, root the first
 * time); skipped with the reason otherwise, except in CI.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INPUT_READY } from '../../scripts/lab/guest/input-check';
import { InputAbs, InputBus, InputEventType, InputKey, InputLed, InputRel, InputSyn } from '../../lib/spec';
import { describeIf } from '../support/requirements';
import { prepareLab, runLab, type LabRun } from '../support/lab-runner';
import { qmpRun, type QmpReply } from '../support/qmp';

const lab = prepareLab('arm64');
const BOOT_TIMEOUT_MS = 180_000;
const { EV_SYN, EV_KEY, EV_ABS } = InputEventType;
const SYN = { type: EV_SYN, code: InputSyn.SYN_REPORT, value: 0 };

const key = (down: boolean): object => ({ type: 'key', data: { down, key: { type: 'qcode', data: 'a' } } });
const abs = (axis: 'x' | 'y', value: number): object => ({ type: 'abs', data: { axis, value } });
/** What the host sends once the guest is ready: a tap of 'a', then one tablet position. */
const COMMANDS = [
  { execute: 'input-send-event', arguments: { events: [key(true)] } },
  { execute: 'input-send-event', arguments: { events: [key(false)] } },
  { execute: 'input-send-event', arguments: { events: [abs('x', 1000), abs('y', 2000)] } },
];

interface DeviceLine {
  path: string;
  version: number;
  name: string;
  serial: string;
  devids?: { bustype: number; vendor: number; product: number; version: number };
  properties: number[];
  events: Record<string, number[]>;
  absInfo: Record<string, { min: number; max: number; fuzz: number; flat: number; res: number }>;
}

describeIf(lab.ok, lab.reason, 'virtio-input on QEMU virtio-keyboard-device and virtio-tablet-device', () => {
  describe.each([
    ['Version 2', false, 2],
    ['Version 1 (legacy)', true, 1],
  ] as const)('%s', (_label, legacy, version) => {
    let run: LabRun;
    let replies: QmpReply[] | Error | undefined;
    let dir: string;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lab-input-'));
      const socket = join(dir, 'qmp.sock');
      let sent: Promise<void> | undefined;
      run = await runLab({
        // QEMU fills transports from the top: the keyboard on /dev/uio31, the tablet on /dev/uio30.
        devices: ['virtio-keyboard-device', 'virtio-tablet-device'],
        extraArgs: ['-qmp', `unix:${socket},server=on,wait=off`],
        legacy,
        // Then the CLI's selftest on the keyboard (after the driver above closed it).
        command:
          'node scripts/lab/guest/input-check.js 60 && ' +
          'node scripts/lab/guest/cli-report.js selftest /dev/uio31 --strict --json',
        timeoutMs: BOOT_TIMEOUT_MS,
        onConsole: (line: string) => {
          if (!sent && line.startsWith(INPUT_READY))
            sent = qmpRun(socket, COMMANDS).then(
              (r) => void (replies = r),
              (error: Error) => void (replies = error),
            );
        },
      });
      await sent;
    }, BOOT_TIMEOUT_MS + 30_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const lines = (kind: string): Record<string, unknown>[] => run.results.filter((r) => r.kind === kind);
    const device = (name: string): DeviceLine => {
      const found = (lines('input-device') as unknown as DeviceLine[]).find((d) => d.name === name);
      if (!found) throw new Error(`no '${name}' reported; console:\n${run.console.slice(-3000)}`);
      return found;
    };
    const of = (kind: string, path: string): Record<string, unknown> | undefined =>
      lines(kind).find((r) => r.path === path);

    test('the guest found both devices, and QEMU took every input-send-event', () => {
      expect(run.timedOut).toBe(false);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-3000)}`);
      expect(run.console).toContain(`${INPUT_READY} 2`);
      expect(replies).toEqual(COMMANDS.map(() => ({ return: {} })));
    });

    test('the keyboard: name, devids, keys, LEDs and autorepeat, read through select/subsel', () => {
      const keyboard = device('QEMU Virtio Keyboard');
      expect(keyboard).toMatchObject({
        path: '/dev/uio31',
        version,
        serial: '',
        devids: { bustype: InputBus.BUS_VIRTUAL, vendor: 0x0627, product: 1, version: 1 },
        properties: [],
        absInfo: {},
      });
      expect(Object.keys(keyboard.events)).toEqual(['EV_KEY', 'EV_LED', 'EV_REP']);
      expect(keyboard.events.EV_KEY).toEqual(expect.arrayContaining([InputKey.KEY_ESC, InputKey.KEY_A]));
      expect(keyboard.events.EV_LED).toEqual([InputLed.LED_NUML, InputLed.LED_CAPSL, InputLed.LED_SCROLLL]);
      // EV_REP answers a size other than 0 with no code set: supported, nothing to list (§5.8.4).
      expect(keyboard.events.EV_REP).toEqual([]);
    });

    test('the tablet: name, devids, buttons, wheel and two absolute axes with their ranges', () => {
      const tablet = device('QEMU Virtio Tablet');
      expect(tablet).toMatchObject({
        path: '/dev/uio30',
        version,
        devids: { bustype: InputBus.BUS_VIRTUAL, vendor: 0x0627, product: 3, version: 2 },
      });
      expect(Object.keys(tablet.events)).toEqual(['EV_KEY', 'EV_REL', 'EV_ABS']);
      expect(tablet.events.EV_KEY).toEqual(
        expect.arrayContaining([InputKey.BTN_LEFT, InputKey.BTN_RIGHT, InputKey.BTN_MIDDLE]),
      );
      expect(tablet.events.EV_REL).toEqual([InputRel.REL_WHEEL]);
      expect(tablet.events.EV_ABS).toEqual([InputAbs.ABS_X, InputAbs.ABS_Y]);
      const range = { min: 0, max: 32767, fuzz: 0, flat: 0, res: 0 };
      expect(tablet.absInfo).toEqual({ [InputAbs.ABS_X]: range, [InputAbs.ABS_Y]: range });
    });

    test('the key tap arrived on the keyboard eventq as press, SYN_REPORT, release, SYN_REPORT', () => {
      const path = device('QEMU Virtio Keyboard').path;
      expect(of('input-events', path)).toMatchObject({
        complete: true,
        events: [
          { type: EV_KEY, code: InputKey.KEY_A, value: 1 },
          SYN,
          { type: EV_KEY, code: InputKey.KEY_A, value: 0 },
          SYN,
        ],
        reports: [1, 1],
        stats: { events: 4, malformed: 0, overruns: 0 },
      });
    });

    test('the tablet position arrived as ABS_X, ABS_Y and one SYN_REPORT', () => {
      const path = device('QEMU Virtio Tablet').path;
      expect(of('input-events', path)).toMatchObject({
        complete: true,
        events: [
          { type: EV_ABS, code: InputAbs.ABS_X, value: 1000 },
          { type: EV_ABS, code: InputAbs.ABS_Y, value: 2000 },
          SYN,
        ],
        reports: [2],
        stats: { events: 3, malformed: 0, overruns: 0 },
      });
    });

    test('selftest --strict on the keyboard: config read and status event pass; one MUST broken (used len)', () => {
      const [cli] = lines('cli');
      expect(cli).toMatchObject({ argv: ['selftest', '/dev/uio31', '--strict', '--json'], status: 1 });
      const report = JSON.parse(cli.stdout as string) as {
        steps: { step: string; ok: boolean; detail?: string; error?: { code?: string } }[];
        strict: { violations: { rule: string }[] };
      };
      expect(report.steps.map((s) => [s.step, s.ok])).toEqual([
        ['identify', true],
        ['negotiate', true],
        ['read config', true],
        ['status event', true],
        ['idle 100 ms', true],
        ['reset', true],
      ]);
      expect(report.steps[2].detail).toMatch(/^"QEMU Virtio Keyboard"; bus 0x6 vendor 0x627 product 0x1 version 0x1; /);
      // The device's side of the status event: a used len of 8 for a buffer it may not write (§2.7.8.1).
      expect(report.strict.violations.map((v) => v.rule)).toEqual(['used-len-valid']);
    });

    test('statusq: QEMU 7.2 uses an LED event buffer with len 8 (0 writable bytes): taken as 0, counted', () => {
      // QEMU's status handler puts back the bytes it read as the used len. A chain with nothing device-writable
      // cannot be indexed by its len, so the ring takes it as 0 and counts it (QueueStats.usedLenIgnored) rather
      // than break the queue, as Linux does.
      for (const name of ['QEMU Virtio Keyboard', 'QEMU Virtio Tablet']) {
        expect(of('input-status', device(name).path)).toMatchObject({ ok: true, usedLenIgnored: 1 });
      }
    });
  });
});
