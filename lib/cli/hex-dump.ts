/**
 * Lines of: byte offset (from `base`), 16 bytes in hex (two groups of 8), the same bytes as ASCII ('.' if not
 * printable).
 */
export function hexDump(data: Uint8Array, base = 0n, indent = ''): string {
  const lines: string[] = [];
  for (let at = 0; at < data.length; at += 16) {
    const row = data.subarray(at, Math.min(at + 16, data.length));
    const hex = Array.from({ length: 16 }, (_, i) => (i < row.length ? row[i].toString(16).padStart(2, '0') : '  '));
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(
      `${indent}${(base + BigInt(at)).toString(16).padStart(8, '0')}  ${hex.slice(0, 8).join(' ')}  ` +
        `${hex.slice(8).join(' ')}  |${ascii}|`,
    );
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}
