import { createServer, type Server, type Socket } from 'node:net';

/** The host end of the guest's console: a unix socket server that echoes, counting bytes. */
export function echoServer(
  path: string,
): Promise<{ server: Server; echoed: () => number; close: () => Promise<void> }> {
  let echoed = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (data) => {
      echoed += data.length;
      socket.write(data);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () =>
      resolve({
        server,
        echoed: () => echoed,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      }),
    );
  });
}
