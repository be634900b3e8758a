'use strict';
// A network namespace for one lab boot: taps (multi-queue where asked) on
// one bridge, nothing else. QEMU runs inside it (runLab's `netns`), so the
// guest's frames reach only the other taps on the bridge, never the host's
// own interfaces. Needs root, /dev/net/tun and iproute2's `ip`.
//
//   const net = createLabNetwork({ taps: [{ name: 'tap0', queues: 2 }, { name: 'tap1' }], mtu: 9000 });
//   ... runLab({ netns: net.name, ... }) ...
//   net.remove();

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');

const live = new Set();
process.once('exit', () => {
  for (const name of live) removeNetns(name);
});

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function removeNetns(name) {
  spawnSync('ip', ['netns', 'delete', name], { stdio: 'ignore' });
  live.delete(name);
}

/** Why a lab network cannot be made here, or '' when it can. */
function labNetworkUnavailable() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root (ip netns, tap devices)';
  if (!fs.existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  const probe = spawnSync('ip', ['-V'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) return "no iproute2 'ip' command (apt-get install iproute2)";
  return '';
}

/**
 * Makes namespace `name` with a bridge br0 (up, `mtu`) and `taps` as its
 * ports: `queues` > 1 makes a multi-queue tap (QEMU's `-netdev tap,queues=N`
 * needs one). Returns the namespace's name and remove(), which deletes it
 * with everything in it (also done when the process exits).
 * @param {{ name?: string, taps: { name: string, queues?: number }[], mtu?: number }} spec
 */
function createLabNetwork(spec) {
  const name = spec.name ?? `vmlab-${process.pid}-${live.size}`;
  if (!/^[\w.-]{1,64}$/.test(name)) throw new RangeError(`bad namespace name '${name}'`);
  const mtu = String(spec.mtu ?? 1500);
  removeNetns(name); // a namespace left by a killed run of the same pid
  ip('netns', 'add', name);
  live.add(name);
  try {
    ip('-n', name, 'link', 'add', 'br0', 'type', 'bridge');
    for (const tap of spec.taps) {
      ip('-n', name, 'tuntap', 'add', tap.name, 'mode', 'tap', ...((tap.queues ?? 1) > 1 ? ['multi_queue'] : []));
      ip('-n', name, 'link', 'set', tap.name, 'mtu', mtu, 'master', 'br0', 'up');
    }
    ip('-n', name, 'link', 'set', 'br0', 'mtu', mtu, 'up');
  } catch (error) {
    removeNetns(name);
    throw new Error(`lab network ${name}: ${error.stderr?.toString().trim() || error.message}`);
  }
  return { name, remove: () => removeNetns(name) };
}

/** QEMU arguments for tap `ifname` as netdev `id` (vnet_hdr on: the header carries the checksum offloads). */
function tapNetdev(id, ifname, queues = 1) {
  const multi = queues > 1 ? `,queues=${queues}` : '';
  return ['-netdev', `tap,id=${id},ifname=${ifname},script=no,downscript=no,vnet_hdr=on${multi}`];
}

module.exports = { createLabNetwork, labNetworkUnavailable, tapNetdev };
