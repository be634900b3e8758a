import { readFileSync } from 'node:fs';

import { DiscoveryError, invalidArgType } from '../errors';
import { parseDeviceSpec, type PhysicalDeviceSpec } from './discovery';

/** Where Linux shows the command line it was booted with. */
export const PROC_CMDLINE = '/proc/cmdline';

/** The module parameter QEMU (microvm) and Firecracker write, one per transport. */
const PARAMETER = 'virtio_mmio.device';

/**
 * Every `virtio_mmio.device=<size>@<baseaddr>:<irq>[:<id>]` entry of a
 * kernel command line, in order, as physical specs (the form QEMU's
 * microvm and Firecracker append for each transport; Linux's
 * drivers/virtio/virtio_mmio.c registers them when built with
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES). `cmdline` defaults to the text of
 * /proc/cmdline.
 *
 * The line is split as the kernel splits it (kernel/params.c): words
 * separated by whitespace, double quotes keeping spaces inside a word and
 * removed around the whole word or around its value, "-" and "_" the same
 * in a parameter name, and nothing after a lone "--" (those words go to
 * init). Each value is read by parseDeviceSpec (its grammar; the irq may be
 * left out, which Linux would refuse). A malformed entry throws
 * DiscoveryError (code ERR_VIRTIO_DISCOVERY) naming the entry, rather than
 * being skipped: a transport that silently goes missing is harder to find.
 * An unreadable /proc/cmdline is a DiscoveryError too.
 */
export function discoverCmdline(cmdline?: string): PhysicalDeviceSpec[] {
  if (cmdline !== undefined && typeof cmdline !== 'string')
    throw invalidArgType(`cmdline must be a string, got ${typeof cmdline}`);
  const text = cmdline ?? readCmdline();
  const specs: PhysicalDeviceSpec[] = [];
  let index = 0;
  for (const word of kernelWords(text)) {
    if (word.name === '--' && word.value === undefined) break;
    if (word.name.replace(/-/g, '_') !== PARAMETER) continue;
    index++;
    if (word.value === undefined)
      throw new DiscoveryError(
        `kernel command line entry ${index} "${word.name}" has no "=<size>@<baseaddr>:<irq>[:<id>]"`,
      );
    try {
      specs.push(parseDeviceSpec(word.value));
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new DiscoveryError(`kernel command line entry ${index}: ${detail}`, { cause: error });
    }
  }
  return specs;
}

function readCmdline(): string {
  try {
    return readFileSync(PROC_CMDLINE, 'utf8');
  } catch (error) {
    throw new DiscoveryError(`cannot read ${PROC_CMDLINE}`, { cause: error });
  }
}

/** One word of the command line: `name` or `name=value`, its quotes removed. */
interface KernelWord {
  readonly name: string;
  readonly value?: string;
}

/** The words of a command line, split and unquoted as kernel/params.c's next_arg does. */
export function* kernelWords(text: string): Generator<KernelWord> {
  let at = 0;
  const isSpace = (c: string): boolean =>
    c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
  while (at < text.length) {
    while (at < text.length && isSpace(text[at])) at++;
    if (at >= text.length) return;
    let start = at;
    let inQuote = false;
    const quoted = text[at] === '"';
    if (quoted) {
      start++;
      at++;
      inQuote = true;
    }
    let equals = -1;
    for (; at < text.length; at++) {
      const c = text[at];
      if (isSpace(c) && !inQuote) break;
      if (equals < 0 && c === '=') equals = at;
      if (c === '"') inQuote = !inQuote;
    }
    let word = text.slice(start, at);
    if (quoted && word.endsWith('"')) word = word.slice(0, -1);
    if (equals < 0) {
      yield { name: word };
      continue;
    }
    const name = text.slice(start, equals);
    let value = word.slice(equals - start + 1);
    if (value.startsWith('"')) {
      value = value.slice(1);
      if (value.endsWith('"')) value = value.slice(0, -1);
    }
    yield { name, value };
  }
}
