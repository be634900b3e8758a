'use strict';
// How busy the host was while a lab bench ran. QEMU runs the guest under TCG
// on the host's few CPUs: another QEMU, or any busy process, slows every
// figure (the ratios measured in one boot less so). Linux /proc only.

const fs = require('node:fs');
const os = require('node:os');

const TICK = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

function cpuTimes() {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: fields[3] + (fields[4] ?? 0), total: fields.reduce((a, b) => a + b, 0) };
}

/** Every process: name, parent, CPU ticks used (user + system), start time in ticks since boot. */
function processes() {
  const list = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
      list.push({
        pid: Number(entry),
        name,
        ppid: Number(rest[1]),
        ticks: Number(rest[11]) + Number(rest[12]),
        start: Number(rest[19]),
      });
    } catch {
      // gone meanwhile
    }
  }
  return list;
}

function uptimeTicks() {
  return Math.round(Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * TICK);
}

/**
 * Watches the host from now on: the CPU time every other process used
 * (sampled each second; ours are this process and its children, the QEMU
 * it started) and the other QEMUs seen. mark(name) notes a moment; stop()
 * returns the totals, and between(from, to) the other processes' CPU
 * seconds between two marked moments (undefined when one is missing).
 */
function watchHost() {
  const start = cpuTimes();
  const began = uptimeTicks();
  const seen = new Map(processes().map((p) => [p.pid, p.ticks]));
  let otherTicks = 0;
  const otherQemus = new Set();
  const sample = () => {
    for (const p of processes()) {
      const ours = p.pid === process.pid || p.ppid === process.pid;
      const before = seen.get(p.pid) ?? (p.start >= began ? 0 : p.ticks);
      if (!ours) otherTicks += Math.max(0, p.ticks - before);
      seen.set(p.pid, p.ticks);
      if (!ours && p.name.startsWith('qemu-system')) otherQemus.add(p.pid);
    }
  };
  // Cumulative other-process ticks over time, to split the total at marked moments.
  const timeline = [{ at: Date.now(), ticks: 0 }];
  const marks = {};
  const timer = setInterval(() => {
    sample();
    timeline.push({ at: Date.now(), ticks: otherTicks });
  }, 1000);
  const ticksAt = (at) => {
    let best = timeline[0];
    for (const point of timeline) if (Math.abs(point.at - at) < Math.abs(best.at - at)) best = point;
    return best.ticks;
  };
  return {
    mark(name) {
      marks[name] = Date.now();
    },
    between(from, to) {
      return marks[from] !== undefined && marks[to] !== undefined
        ? (ticksAt(marks[to]) - ticksAt(marks[from])) / TICK
        : undefined;
    },
    stop() {
      clearInterval(timer);
      sample();
      timeline.push({ at: Date.now(), ticks: otherTicks });
      const end = cpuTimes();
      return {
        cpus: os.cpus().length,
        wallS: (uptimeTicks() - began) / TICK,
        busyPct: 100 * (1 - (end.idle - start.idle) / (end.total - start.total)),
        otherCpuS: otherTicks / TICK,
        otherQemus: otherQemus.size,
      };
    },
  };
}

module.exports = { watchHost };
