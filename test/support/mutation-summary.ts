/** The counts of a mutation run, and the block printed to stdout (CI logs). */

export interface MutationSummary {
  scenarios: number;
  seeds: number;
  seedsPlanned: number;
  operations: number;
  crashes: number;
  doubleCompletions: number;
  outOfRegionAccesses: number;
  unsettledRequests: number;
  // Extra counts.
  opened: number;
  openFailures: Map<string, number>;
  rejections: Map<string, number>;
  /** What the RangeErrors and TypeErrors said (digits folded). */
  argumentErrors: Set<string>;
  stalledSeeds: number;
  /** Seeds whose device stalled though nothing lied (a driver that lost a completion, or a slow turn). */
  stallsWithoutLies: string[];
  seedsOverTime: number;
  requests: number;
  registerLies: number;
  ringLies: number;
  /** Register and ring lies by the FAULT_CATALOGUE fault each one tells ('uncatalogued' where none does). */
  liesByFault: Map<string, number>;
  integrityChecked: number;
  /** Wrong results and freed-memory writes after a lie that explains them (a device lie the driver cannot see). */
  explainedByLies: number;
  slowestSeedMs: number;
  elapsedMs: number;
  /** The first few failures, with their seed, for the report. */
  findings: string[];
}

export function newSummary(planned: number): MutationSummary {
  return {
    scenarios: 0,
    seeds: 0,
    seedsPlanned: planned,
    operations: 0,
    crashes: 0,
    doubleCompletions: 0,
    outOfRegionAccesses: 0,
    unsettledRequests: 0,
    opened: 0,
    openFailures: new Map(),
    rejections: new Map(),
    argumentErrors: new Set(),
    stalledSeeds: 0,
    stallsWithoutLies: [],
    seedsOverTime: 0,
    requests: 0,
    registerLies: 0,
    ringLies: 0,
    liesByFault: new Map(),
    integrityChecked: 0,
    explainedByLies: 0,
    slowestSeedMs: 0,
    elapsedMs: 0,
    findings: [],
  };
}

/** Up to five stalls without a data lie, in parentheses ('' when there are none). */
function stallList(stalls: readonly string[]): string {
  if (stalls.length === 0) return '';
  return ` (${stalls.slice(0, 5).join('; ')}${stalls.length > 5 ? '; …' : ''})`;
}

/** The summary block printed to stdout (CI logs). */
export function formatSummary(s: MutationSummary): string {
  const map = (m: Map<string, number>): string =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  return [
    'virtio-mmio mutation run',
    `  scenarios: ${s.scenarios}`,
    `  seeds: ${s.seeds} (of ${s.seedsPlanned} planned` +
      `${s.seeds < s.seedsPlanned ? ', stopped by the time limit' : ''})`,
    `  operations: ${s.operations}`,
    `  crashes: ${s.crashes}`,
    `  double completions: ${s.doubleCompletions}`,
    `  out-of-region accesses: ${s.outOfRegionAccesses}`,
    `  unsettled requests: ${s.unsettledRequests}`,
    `  --`,
    `  drivers opened: ${s.opened}; open failures by code: ${map(s.openFailures)}`,
    `  requests: ${s.requests}; rejections by code: ${map(s.rejections)}`,
    `  RangeError/TypeError messages: ${[...s.argumentErrors].join('; ') || 'none'}`,
    `  lies told: registers ${s.registerLies}, rings ${s.ringLies}; seeds where the device stalled: ${s.stalledSeeds}` +
      `, without a data lie: ${s.stallsWithoutLies.length}${stallList(s.stallsWithoutLies)}`,
    `  lies by catalogue fault: ${map(s.liesByFault)}`,
    `  results checked in seeds without lies: ${s.integrityChecked}; wrong results or freed-memory writes ` +
      `explained by a lie: ${s.explainedByLies}`,
    `  seeds over the time bound: ${s.seedsOverTime}; slowest seed ${s.slowestSeedMs} ms; elapsed ` +
      `${(s.elapsedMs / 1000).toFixed(1)} s`,
    ...(s.findings.length ? ['  findings:', ...s.findings.map((f) => `    ${f.replace(/\n/g, '\n      ')}`)] : []),
    '',
  ].join('\n');
}
