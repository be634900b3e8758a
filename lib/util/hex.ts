/**
 * The one hexadecimal formatter for messages, dumps and reports: `0x` and the value in lowercase hex,
 * left-padded with zeros to `digits` when given.
 */
export function hex(value: number | bigint, digits = 0): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}

/** hex() of a 32-bit register value read as unsigned, so a negative int32 prints as 0xffff_ffff does. */
export function hex32(value: number, digits = 0): string {
  return hex(value >>> 0, digits);
}

/** hex32() for numbers, hex() for bigints: for fields that are 32-bit registers or 64-bit addresses. */
export function hexUnsigned(value: number | bigint, digits = 0): string {
  return typeof value === 'bigint' ? hex(value, digits) : hex32(value, digits);
}
