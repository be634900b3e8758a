/**
 * The buffer-ownership issue, finding 6: a device that floods the control
 * receiveq with DEVICE_ADD for ports we have no queues for, and never takes
 * our PORT_READY 0 replies from the control transmitq, must not grow our
 * memory: replies outstanding are bounded, the rest dropped and counted.
 */
import { VirtioConsole } from '../../lib/devices';
import { ConsoleControlEvent as E } from '../../lib/spec';
import { ConsoleModel } from '../../lib/sim';
import { gateModel } from '../support/gated-model';
import { SIM_VARIANTS, simRig, turns } from '../support/sim-rig';

const FLOOD = 3000;

describe.each(SIM_VARIANTS)('on the %s sim', (_label, variant) => {
  test('finding 6: DEVICE_ADD flood, control transmitq never drained: memory bounded, drops counted', async () => {
    const model = new ConsoleModel({ multiport: { maxPorts: 2, ports: [{ id: 0, console: true }] } });
    // queue 3, the control transmitq: the device takes our replies and never uses them.
    const gate = gateModel(model, (request, g) => request.queue === 3 && g.holding);
    gate.holding = false;
    const rig = simRig(variant, gate.model);
    const console = VirtioConsole.open(rig.transport, { memory: rig.pool, maxPorts: 2 });
    try {
      await console.waitForPort(0, { timeoutMs: 2000 });
      await turns(5);
      gate.holding = true;
      const before = rig.pool.stats();
      for (let i = 0; i < FLOOD; i++) model.sendControl(100 + (i % 1000), E.DEVICE_ADD, 0);
      for (let i = 0; i < 200 && model.pendingControl > 0; i++) await turns(2);
      expect(model.pendingControl).toBe(0);
      const after = rig.pool.stats();
      // At most one small region per outstanding reply: the control transmitq's size of them.
      expect(after.regions - before.regions).toBeLessThanOrEqual(32);
      expect(after.bytesInUse - before.bytesInUse).toBeLessThanOrEqual(32 * 64);
      expect(console.droppedControlReplies).toBeGreaterThanOrEqual(FLOOD - 32);
      expect(console.ignoredControlMessages).toBe(FLOOD);
      // Once the device takes them, replies flow again.
      gate.holding = false;
      gate.releaseAll();
      await turns(5);
      expect(rig.pool.stats().regions).toBe(before.regions);
      const dropped = console.droppedControlReplies;
      model.sendControl(7, E.DEVICE_ADD, 0);
      await turns(10);
      expect(console.droppedControlReplies).toBe(dropped);
      expect(model.controlLog.filter((m) => m.id === 7 && m.event === E.PORT_READY && m.value === 0)).toHaveLength(1);
    } finally {
      console.close();
      expect(rig.close()).toEqual([]);
    }
  });
});
