// Websocket load through a proxy: closed-loop echo over many connections, idle connections held
// open for memory, and open/send/close cycles for the soak test.
import WebSocket from 'ws';

const message = Buffer.alloc(64, 'm');

function open(url: string, timeoutMs = 10_000): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    ws.once('open', () => resolve(ws));
    // Rejects while opening (a no-op afterwards); later errors just end the socket.
    ws.on('error', (error) => {
      ws.terminate();
      reject(error);
    });
  });
}

export interface EchoResult {
  connections: number;
  seconds: number;
  messages: number;
  messagesPerSecond: number;
}

/**
 * Each of `connections` websockets sends a 64-byte message, waits for its echo, and sends the next;
 * counts echoes during `seconds` after `warmupSeconds`.
 */
export async function echoLoad(
  url: string,
  connections: number,
  seconds: number,
  warmupSeconds: number,
  hooks: { onStart?: () => void; onEnd?: () => void } = {},
): Promise<EchoResult> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(url)));
  let counting = false;
  let messages = 0;
  let running = true;
  for (const ws of sockets) {
    ws.on('message', () => {
      if (counting) messages++;
      if (running) ws.send(message);
    });
    ws.send(message);
  }
  await sleep(warmupSeconds * 1000);
  hooks.onStart?.();
  counting = true;
  const started = performance.now();
  await sleep(seconds * 1000);
  counting = false;
  const elapsed = (performance.now() - started) / 1000;
  hooks.onEnd?.();
  running = false;
  await closeAll(sockets);
  return { connections, seconds: elapsed, messages, messagesPerSecond: messages / elapsed };
}

/** Opens `count` websockets, `concurrency` handshakes at a time, and leaves them idle. */
export async function openIdle(url: string, count: number, concurrency = 100): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      sockets.push(await open(url));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } catch (error) {
    await closeAll(sockets);
    throw error;
  }
  return sockets;
}

export async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.terminate();
        }),
    ),
  );
}

export interface CycleResult {
  cycles: number;
  failures: number;
  seconds: number;
}

/**
 * `cycles` times: open a websocket, send one message, wait for the echo, close it; `concurrency`
 * at a time. A cycle that fails (target restarting) counts as a failure, not an error.
 */
export async function openCloseCycles(
  url: string,
  cycles: number,
  concurrency: number,
): Promise<CycleResult> {
  const started = performance.now();
  let next = 0;
  let failures = 0;
  const cycle = async () => {
    const ws = await open(url, 5000);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
      ws.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('close', () => {
        clearTimeout(timer);
        reject(new Error('closed before the echo'));
      });
      ws.send(message);
    }).finally(() => {
      ws.removeAllListeners('close');
      ws.close();
    });
  };
  const worker = async () => {
    while (next < cycles) {
      next++;
      try {
        await cycle();
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { cycles, failures, seconds: (performance.now() - started) / 1000 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
