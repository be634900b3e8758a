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
