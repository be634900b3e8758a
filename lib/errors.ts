/**
 * The library's one errors module. Every error has a stable string `code`
 * that programs can switch on; messages are for people and may change.
 */

export class VirtioError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Use of a register window, DMA buffer, fd or epoll set after close(). */
export class ClosedError extends VirtioError {
  constructor(message: string) {
    super('ERR_VIRTIO_CLOSED', message);
  }
}

/**
 * A failed system call, shaped like Node's fs errors: `errno` (negative, as
 * libuv reports it), `code` (the errno name, e.g. 'EACCES'), `syscall`,
 * `path`, and a `hint` saying how to fix it where one is known.
 */
export class SyscallError extends VirtioError {
  readonly errno: number;
  readonly syscall: string;
  // Absent (not undefined) when unknown, as on Node's fs errors.
  declare readonly path?: string;
  declare readonly hint?: string;

  constructor(fields: { message: string; errno: number; code: string; syscall: string; path?: string; hint?: string }) {
    super(fields.code, fields.hint ? `${fields.message}: ${fields.hint}` : fields.message);
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    if (fields.path !== undefined) (this as { path?: string }).path = fields.path;
    if (fields.hint !== undefined) (this as { hint?: string }).hint = fields.hint;
  }
}

/** DMA memory that cannot be had in the form asked for (not present, not contiguous). */
export class DmaError extends VirtioError {
  static readonly NOT_PRESENT = 'ERR_VIRTIO_DMA_NOT_PRESENT';
  static readonly NOT_CONTIGUOUS = 'ERR_VIRTIO_DMA_NOT_CONTIGUOUS';
  static readonly EXHAUSTED = 'ERR_VIRTIO_DMA_EXHAUSTED';
}

/** The device or its interrupt line went away (UIO fd EOF, EIO, EPOLLERR/EPOLLHUP). */
export class DeviceGoneError extends VirtioError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VIRTIO_DEVICE_GONE', message, options);
  }
}

/** A sysfs entry that is missing or malformed (UIO discovery). */
export class DiscoveryError extends VirtioError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VIRTIO_DISCOVERY', message, options);
  }
}

/**
 * The register window does not hold a usable virtio-mmio device, or a
 * transport step did not complete (virtio 1.2 §4.2). `code` tells which.
 */
export class TransportError extends VirtioError {
  /** MagicValue is not "virt". */
  static readonly BAD_MAGIC = 'ERR_VIRTIO_BAD_MAGIC';
  /** Version is neither 1 nor 2. */
  static readonly BAD_VERSION = 'ERR_VIRTIO_BAD_VERSION';
  /** DeviceID 0: a transport with no device behind it. */
  static readonly EMPTY_SLOT = 'ERR_VIRTIO_EMPTY_SLOT';
  /** A driver for one device type was given another. */
  static readonly WRONG_DEVICE = 'ERR_VIRTIO_WRONG_DEVICE';
  /** Status did not read 0 after the reset write within the time limit. */
  static readonly RESET_TIMEOUT = 'ERR_VIRTIO_RESET_TIMEOUT';
  /** ConfigGeneration kept changing across a config read. */
  static readonly CONFIG_UNSTABLE = 'ERR_VIRTIO_CONFIG_UNSTABLE';
  /** QueueNumMax is 0 for this queue index. */
  static readonly QUEUE_UNAVAILABLE = 'ERR_VIRTIO_QUEUE_UNAVAILABLE';
  /** QueueReady/QueuePFN was not 0 before setup, or did not read back 0 at teardown. */
  static readonly QUEUE_IN_USE = 'ERR_VIRTIO_QUEUE_IN_USE';
  /** QueueReset did not read back 0 within the time limit. */
  static readonly QUEUE_RESET_TIMEOUT = 'ERR_VIRTIO_QUEUE_RESET_TIMEOUT';
  /** QueueReset read back 0 but QueueReady did not: the device did not reset the queue (virtio 1.2 §4.2.2.1). */
  static readonly QUEUE_RESET_IGNORED = 'ERR_VIRTIO_QUEUE_RESET_IGNORED';
  /** A call made in the wrong phase of the init sequence (e.g. queue setup after DRIVER_OK). */
  static readonly STATE = 'ERR_VIRTIO_STATE';
  /** A feature this call needs was not negotiated (e.g. queue reset without RING_RESET). */
  static readonly NOT_NEGOTIATED = 'ERR_VIRTIO_NOT_NEGOTIATED';
  /** The config space is too small for the device type, or a field holds a value the spec does not allow. */
  static readonly CONFIG_INVALID = 'ERR_VIRTIO_CONFIG_INVALID';
}

/** Feature negotiation failed (virtio 1.2 §3.1.1); the device status is FAILED. */
export class NegotiationError extends VirtioError {
  /** The device did not keep FEATURES_OK set. */
  static readonly FEATURES_REFUSED = 'ERR_VIRTIO_FEATURES_REFUSED';
  /** A Version 2 device did not offer VIRTIO_F_VERSION_1 (§4.2.2). */
  static readonly VERSION_1_MISSING = 'ERR_VIRTIO_VERSION_1_MISSING';
  /** The device lacks a feature the driver cannot work without. */
  static readonly FEATURE_MISSING = 'ERR_VIRTIO_FEATURE_MISSING';

  constructor(
    code: string,
    message: string,
    /** Device features offered and driver features written, as far as known. */
    readonly offered: bigint,
    readonly requested: bigint,
  ) {
    super(code, message);
  }
}

/**
 * No free descriptors for the request right now. Retryable: wait for a
 * completion (or use the waiting submit) and try again.
 */
export class QueueFullError extends VirtioError {
  readonly retryable = true;

  constructor(message: string) {
    super('ERR_VIRTIO_QUEUE_FULL', message);
  }
}

/**
 * The device broke the ring protocol (e.g. a used entry naming a descriptor
 * it was never given). Sticky: the queue refuses all later work with this
 * same error until the device is reset, and all pending requests were
 * rejected with it. `reason` says what the device did.
 */
export class DeviceBrokenError extends VirtioError {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super('ERR_VIRTIO_BROKEN', message);
  }
}

/**
 * The device used a request in a way its device type's protocol does not
 * allow (e.g. a virtio-blk request used without its status byte). Only
 * that request is rejected; the queue goes on. `reason` says what.
 */
export class ProtocolError extends VirtioError {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super('ERR_VIRTIO_PROTOCOL', message);
  }
}

/**
 * A request the device did not complete within its time limit. Its buffers
 * stay with the device until it uses them (or is reset); the result, if
 * it ever comes, is discarded.
 */
export class TimeoutError extends VirtioError {
  constructor(
    message: string,
    /** The limit that passed, in milliseconds. */
    readonly timeoutMs: number,
  ) {
    super('ERR_VIRTIO_TIMEOUT', message);
  }
}

/** A device completed a request with an error status (device-specific `status`). */
export class DeviceIoError extends VirtioError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super('ERR_VIRTIO_IO', message);
  }
}

/** A write, discard or write-zeroes to a read-only device (refused before anything is sent). */
export class ReadOnlyError extends VirtioError {
  constructor(message: string) {
    super('ERR_VIRTIO_READ_ONLY', message);
  }
}

/**
 * A request's writable buffer lies in memory a device still holds from a
 * request that was given up on (timeout, abort, detach): the device may
 * still write it. Refused before anything is sent; wait for the earlier
 * request's SubmitOptions.reclaim.
 */
export class BufferHeldError extends VirtioError {
  constructor(message: string) {
    super('ERR_VIRTIO_BUFFER_HELD', message);
  }
}

/** A pending request was dropped because its queue or device was closed or reset. */
export class CanceledError extends VirtioError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VIRTIO_CANCELED', message, options);
  }
}

/** The caller's AbortSignal fired; `cause` is the signal's reason (as Node's own APIs do). */
export class AbortError extends VirtioError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, options);
  }
}

/** A virtio-console port that cannot be used as asked (virtio 1.2 §5.3.6.2). `code` tells why. */
export class PortError extends VirtioError {
  /** The device has not added the port, or removed it (DEVICE_REMOVE). */
  static readonly ABSENT = 'ERR_VIRTIO_PORT_ABSENT';
  /** No port matched within the time given to waitForPort(). */
  static readonly NOT_FOUND = 'ERR_VIRTIO_PORT_NOT_FOUND';
  /** Ports other than 0 need VIRTIO_CONSOLE_F_MULTIPORT, which was not negotiated. */
  static readonly NO_MULTIPORT = 'ERR_VIRTIO_PORT_NO_MULTIPORT';

  constructor(
    code: string,
    message: string,
    /** The port id concerned, when there is one. */
    readonly port?: number,
  ) {
    super(code, message);
  }
}

/**
 * A command line the `virtio-mmio` CLI cannot run: an unknown command or
 * option, a bad option value, a device name that does not parse. Exit
 * status 2.
 */
export class UsageError extends VirtioError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VIRTIO_USAGE', message, options);
  }
}

/** Data read back from a device differs from what was written to it (the CLI's `blk write --verify`). */
export class VerifyError extends VirtioError {
  constructor(
    message: string,
    /** The first byte that differs, from the start of the data written. */
    readonly offset: number,
  ) {
    super('ERR_VIRTIO_VERIFY', message);
  }
}

/**
 * Bad arguments keep the classes Node's own APIs throw (TypeError,
 * RangeError) and carry Node's codes, so `err.code` works the same on
 * them as on an `fs` or `Buffer` argument error.
 */
export type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

function withCode<E extends Error>(error: E, code: ArgumentErrorCode): E & { code: ArgumentErrorCode } {
  return Object.assign(error, { code });
}

/** An argument of the wrong type (a string for a number, a missing callback): TypeError, ERR_INVALID_ARG_TYPE. */
export function invalidArgType(message: string): TypeError & { code: ArgumentErrorCode } {
  return withCode(new TypeError(message), 'ERR_INVALID_ARG_TYPE');
}

/** A number outside its allowed range (an offset past the end, a size too large): RangeError, ERR_OUT_OF_RANGE. */
export function outOfRange(message: string): RangeError & { code: ArgumentErrorCode } {
  return withCode(new RangeError(message), 'ERR_OUT_OF_RANGE');
}

/**
 * An argument of the right type whose value is not allowed (misaligned, an
 * unknown name, a buffer from elsewhere): ERR_INVALID_ARG_VALUE, a
 * TypeError or (as Node also uses that code) a RangeError.
 */
export function invalidArgValue(
  message: string,
  kind: 'type' | 'range' = 'type',
): (TypeError | RangeError) & { code: ArgumentErrorCode } {
  return withCode(kind === 'range' ? new RangeError(message) : new TypeError(message), 'ERR_INVALID_ARG_VALUE');
}
