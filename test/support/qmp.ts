/**
 * A QEMU Machine Protocol client for lab tests (QEMU's -qmp
 * unix:PATH,server=on,wait=off): connect, leave capabilities negotiation
 * mode, run commands one at a time, each answered before the next is sent.
 */
import { connect } from 'node:net';

export type QmpReply = { return: unknown } | { error: { class: string; desc: string } };

/** Runs `commands` ({ execute, arguments? }) after qmp_capabilities; resolves with every reply, in order. */
export function qmpRun(socketPath: string, commands: readonly object[], timeoutMs = 10_000): Promise<QmpReply[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const queue = [{ execute: 'qmp_capabilities' }, ...commands];
    const replies: QmpReply[] = [];
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`QMP: no reply within ${timeoutMs} ms (${replies.length} of ${queue.length} answered)`));
    }, timeoutMs);
    const next = (): void => {
      const command = queue[replies.length];
      if (command) socket.write(`${JSON.stringify(command)}\n`);
      else {
        clearTimeout(timer);
        socket.end();
        // The capabilities reply is not the caller's.
        resolve(replies.slice(1));
      }
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let at: number;
      while ((at = buffered.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffered.slice(0, at)) as Record<string, unknown>;
        buffered = buffered.slice(at + 1);
        // The greeting starts the exchange; events (asynchronous messages) are not replies.
        if ('QMP' in message) next();
        else if ('return' in message || 'error' in message) {
          replies.push(message as QmpReply);
          next();
        }
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
